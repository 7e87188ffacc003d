# The Debian package (CPack's DEB generator): `scripts/package` builds it, or `cpack -G DEB` in a build
# tree after `ninja guest-kernel`. It holds what packaging/install.cmake installs, with PREFIX /usr, and the
# maintainer scripts in packaging/debian/ (the corral group, the systemd unit).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME corral)
set(CPACK_PACKAGE_VENDOR "the corral authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "VMs and containers side by side in AWS-VPC-style networks")
# The extended description, lines of at most 80 columns.
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "corral runs lightweight VMs (QEMU, directly or through libvirt) and containers\n"
  "(namespaces, cgroups, seccomp, capabilities) side by side on one Linux host\n"
  "and wires both into AWS-VPC-style private networks: subnets, route tables,\n"
  "internet and NAT gateways, security groups and network ACLs, each visible\n"
  "with ip, bridge and nft. corrald is the daemon (REST/JSON on a Unix socket),\n"
  "corral its command-line client. The package ships the busybox container and\n"
  "VM images and corral's own guest kernel.")
set(CPACK_PACKAGE_CONTACT "corral maintainers <maintainers@users.noreply.r-seed-74843df2.example>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Installed under a staging DESTDIR with PREFIX /usr, so the systemd unit lands in /lib/systemd/system and
# names /usr/bin/corrald (packaging/install.cmake).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # corral_VERSION-RELEASE_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# What corrald runs rather than links: QEMU for VMs, qemu-img for their overlays, mkfs.ext4 for image disks;
# adduser for the postinst; dnsmasq-base for the VPC resolvers; haproxy for load balancers. libvirt (VMs on machine pc, --vm-engine
# libvirt) and mmdebstrap (image build --debian) are only needed for those. The shared libraries corral and corrald link come first, with the
# versions dpkg-shlibdeps reads from the binaries: the generated shlibdeps.cmake below, run by cpack. (CPack's own
# CPACK_DEBIAN_PACKAGE_SHLIBDEPS cannot be used: it passes every file to `file` as a CMake list, which the
# busybox rootfs's "[" and "[[" break.)
set(CORRAL_DEBIAN_RUNTIME_DEPENDS "qemu-system-x86, qemu-utils, e2fsprogs, adduser, dnsmasq-base, haproxy")
set(CORRAL_DEBIAN_LINKED_BINARIES)
foreach(program ${CORRAL_INSTALLED_PROGRAMS})
  list(APPEND CORRAL_DEBIAN_LINKED_BINARIES $<TARGET_FILE:${program}>)
endforeach()
file(GENERATE OUTPUT ${CMAKE_BINARY_DIR}/packaging/shlibdeps.cmake CONTENT "
# Generated from packaging/debian.cmake: cpack's CPACK_PROJECT_CONFIG_FILE.
set(work ${CMAKE_BINARY_DIR}/packaging/shlibdeps)
file(REMOVE_RECURSE \${work})
file(MAKE_DIRECTORY \${work}/debian)
file(TOUCH \${work}/debian/control)
set(arguments)
foreach(binary ${CORRAL_DEBIAN_LINKED_BINARIES})
  list(APPEND arguments -e \${binary})
endforeach()
execute_process(COMMAND dpkg-shlibdeps -O \${arguments} WORKING_DIRECTORY \${work}
                OUTPUT_VARIABLE substvars RESULT_VARIABLE failed ERROR_VARIABLE errors)
if(failed OR NOT substvars MATCHES \"shlibs:Depends=([^\\n]*)\")
  message(FATAL_ERROR \"dpkg-shlibdeps failed: \${errors}\")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS \"\${CMAKE_MATCH_1}, ${CORRAL_DEBIAN_RUNTIME_DEPENDS}\")
")
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/packaging/shlibdeps.cmake)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libvirt-daemon-system, libvirt-daemon-driver-qemu")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mmdebstrap")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/debian/postinst ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
    ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Debian's changelog and the lintian overrides go into the package only (CPack runs this at its install).
configure_file(${CMAKE_SOURCE_DIR}/packaging/debian/changelog.in ${CMAKE_BINARY_DIR}/packaging/changelog.Debian @ONLY)
set(CORRAL_DEBIAN_ONLY_FILES ${CMAKE_BINARY_DIR}/packaging/debian-only.cmake)
file(WRITE ${CORRAL_DEBIAN_ONLY_FILES} "
execute_process(COMMAND gzip -9nf ${CMAKE_BINARY_DIR}/packaging/changelog.Debian -c
                OUTPUT_FILE ${CMAKE_BINARY_DIR}/packaging/changelog.Debian.gz COMMAND_ERROR_IS_FATAL ANY)
file(INSTALL ${CMAKE_BINARY_DIR}/packaging/changelog.Debian.gz DESTINATION \"\${CMAKE_INSTALL_PREFIX}/share/doc/corral\"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL ${CMAKE_SOURCE_DIR}/packaging/debian/lintian-overrides DESTINATION \"\${CMAKE_INSTALL_PREFIX}/share/lintian/overrides\"
     RENAME corral PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
")
set(CPACK_INSTALL_SCRIPTS ${CORRAL_DEBIAN_ONLY_FILES})
# CPack counts each of busybox's ~270 applet symlinks in the rootfs as a copy of busybox in Installed-Size
# (~570 MB instead of ~55): packaging/deb-installed-size.cmake sets it to what dpkg will really use.
set(CPACK_POST_BUILD_SCRIPTS ${CMAKE_SOURCE_DIR}/packaging/deb-installed-size.cmake)
include(CPack)
