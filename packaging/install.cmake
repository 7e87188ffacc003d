# What `cmake --install` puts where, and the man pages and bash completion it installs (README.md,
# "Installing"). Included from CMakeLists.txt after the targets; packaging/debian.cmake turns the same
# installation into a Debian package.
#
#   PREFIX/bin/                       corral, corrald, corral-runtime (CORRAL_INSTALLED_PROGRAMS)
#   PREFIX/lib/corral/                corral-reaper, corral-init, corral-probe (CORRAL_INSTALLED_HELPERS)
#   PREFIX/lib/corral/images/         busybox/rootfs, busybox/vm, kernels/corral: corrald's default --image-dir
#   PREFIX/share/man/man1/corral.1, PREFIX/share/man/man8/corrald.8
#   PREFIX/share/bash-completion/completions/corral
#   PREFIX/share/doc/corral/          README.md, api.md, networking.md, images.md, copyright
#   systemd unit corrald.service      /lib/systemd/system for PREFIX /usr, else PREFIX/lib/systemd/system
#
# corrald finds the helpers and images from its own path (daemon/install_layout.h), so an installed tree
# can live under any prefix. The images are built artifacts of this build (images/README.md): they are
# installed, not rebuilt on the user's host; what users add (pulled, imported, built images) lives in
# corrald's state directory.

# The programs people run. A new one is one more name here: it is installed, its shared libraries go into the
# package's Depends, and help2man makes its man page from its --help and --version.
set(CORRAL_INSTALLED_PROGRAMS corral corrald corral-runtime)
# Run by corrald or inside instances, not by people.
set(CORRAL_INSTALLED_HELPERS corral-reaper corral-init corral-probe)

install(TARGETS ${CORRAL_INSTALLED_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${CORRAL_INSTALLED_HELPERS} RUNTIME DESTINATION ${CORRAL_INSTALL_PKGLIBDIR})

set(image_destination ${CORRAL_INSTALL_PKGLIBDIR}/images)
# USE_SOURCE_PERMISSIONS keeps the modes of directories too: /tmp and /var/tmp stay 1777.
install(DIRECTORY ${CORRAL_IMAGE_DIR}/busybox/rootfs DESTINATION ${image_destination}/busybox
        USE_SOURCE_PERMISSIONS)
install(FILES ${CORRAL_IMAGE_DIR}/busybox/image.json DESTINATION ${image_destination}/busybox)
install(FILES ${CORRAL_IMAGE_DIR}/busybox/vm/vmlinuz ${CORRAL_IMAGE_DIR}/busybox/vm/initramfs.img
              ${CORRAL_IMAGE_DIR}/busybox/vm/manifest.json
        DESTINATION ${image_destination}/busybox/vm)
# corral's guest kernel is built only by `ninja guest-kernel` (minutes): installed when it has been built
# (scripts/package builds it), else corrald boots Debian's cloud kernel on machine pc.
install(DIRECTORY ${CORRAL_IMAGE_DIR}/kernels/corral DESTINATION ${image_destination}/kernels
        USE_SOURCE_PERMISSIONS OPTIONAL PATTERN .built EXCLUDE)

# ---- Man pages and bash completion ----
# corral(1) and the completion are generated from the CLI's command table by corral-docgen (cli/docs.cc),
# with every command's usage, arguments and options as --help prints them; corrald(8) by help2man from
# corrald --help.
set(CORRAL_DOCS_DIR ${CMAKE_BINARY_DIR}/docs)
file(MAKE_DIRECTORY ${CORRAL_DOCS_DIR})
string(TIMESTAMP CORRAL_DOCS_DATE "%Y-%m-%d" UTC)  # honours SOURCE_DATE_EPOCH
# Man pages are installed gzipped (-n: no name or time stamp in the file, so a rebuild is the same file).
add_custom_command(
  OUTPUT ${CORRAL_DOCS_DIR}/corral.1 ${CORRAL_DOCS_DIR}/corral.1.gz ${CORRAL_DOCS_DIR}/corral.bash-completion
  COMMAND corral-docgen man ${CORRAL_DOCS_DATE} ${CORRAL_DOCS_DIR}/corral.1
  COMMAND gzip -9nf --keep ${CORRAL_DOCS_DIR}/corral.1
  COMMAND corral-docgen bash-completion ${CORRAL_DOCS_DIR}/corral.bash-completion
  DEPENDS corral-docgen
  COMMENT "Generating corral(1) and corral's bash completion from the command table")
set(generated_docs ${CORRAL_DOCS_DIR}/corral.1.gz ${CORRAL_DOCS_DIR}/corral.bash-completion)
# Every other program of CORRAL_INSTALLED_PROGRAMS gets a page in section 8 from its --help and --version by
# help2man, with the sections of the file PROGRAM.h2m in packaging/ when it exists (corrald.h2m) and
# CORRAL_MAN_NAME_PROGRAM as the NAME line.
set(CORRAL_MAN_NAME_corrald "the corral daemon: VMs and containers in AWS-VPC-style networks")
set(CORRAL_MAN_NAME_corral-runtime "an OCI container runtime with runc's command line, built from corral's container runtime")
find_program(HELP2MAN help2man)
foreach(program IN LISTS CORRAL_INSTALLED_PROGRAMS)
  if(program STREQUAL "corral")
    continue()
  endif()
  if(NOT HELP2MAN)
    message(WARNING "help2man not found (scripts/install-deps installs it): no ${program}(8) man page")
    continue()
  endif()
  set(page ${CORRAL_DOCS_DIR}/${program}.8)
  set(include_file ${CMAKE_SOURCE_DIR}/packaging/${program}.h2m)
  set(include_option)
  set(include_depends)
  if(EXISTS ${include_file})
    set(include_option --include=${include_file})
    set(include_depends ${include_file})
  endif()
  if(NOT DEFINED CORRAL_MAN_NAME_${program})
    set(CORRAL_MAN_NAME_${program} "part of corral")
  endif()
  add_custom_command(
    OUTPUT ${page} ${page}.gz
    COMMAND ${HELP2MAN} --no-info --section=8 --no-discard-stderr "--name=${CORRAL_MAN_NAME_${program}}"
            ${include_option} --output=${page} $<TARGET_FILE:${program}>
    COMMAND gzip -9nf --keep ${page}
    DEPENDS ${program} ${include_depends}
    COMMENT "Generating ${program}(8) from ${program} --help (help2man)")
  list(APPEND generated_docs ${page}.gz)
  install(FILES ${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
endforeach()
add_custom_target(docs ALL DEPENDS ${generated_docs})
install(FILES ${CORRAL_DOCS_DIR}/corral.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CORRAL_DOCS_DIR}/corral.bash-completion DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME corral)

install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/docs/api.md ${CMAKE_SOURCE_DIR}/docs/networking.md
              ${CMAKE_SOURCE_DIR}/packaging/copyright
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/images/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME images.md)

# The systemd unit names corrald by its installed path, known only at install time (CPack installs with
# PREFIX /usr into a staging DESTDIR). Debian keeps units in /lib/systemd/system.
set(unit_template ${CMAKE_SOURCE_DIR}/packaging/corrald.service.in)
set(unit_file ${CMAKE_BINARY_DIR}/packaging/corrald.service)
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(unit_dir \"/lib/systemd/system\")
  else()
    set(unit_dir \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  endif()
  set(CORRAL_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  set(CORRAL_DOCDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  configure_file(\"${unit_template}\" \"${unit_file}\" @ONLY)
  file(INSTALL \"${unit_file}\" DESTINATION \"\${unit_dir}\")")
