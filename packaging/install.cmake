# What `cmake --install` puts where, and the man pages and bash completion it installs (README.md,
# "Installing"). Included from CMakeLists.txt after the targets; packaging/debian.cmake turns the same
# installation into a Debian package.
#
#   PREFIX/bin/                       corral, corrald (CORRAL_INSTALLED_PROGRAMS)
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

# The programs people run. A new one (corral-runtime) is one more name here; it then also gets a man page
# from help2man when it answers --help and --version like corrald.
set(CORRAL_INSTALLED_PROGRAMS corral corrald)
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
find_program(HELP2MAN help2man)
if(HELP2MAN)
  add_custom_command(
    OUTPUT ${CORRAL_DOCS_DIR}/corrald.8 ${CORRAL_DOCS_DIR}/corrald.8.gz
    COMMAND ${HELP2MAN} --no-info --section=8 --no-discard-stderr
            "--name=the corral daemon: VMs and containers in AWS-VPC-style networks"
            --include=${CMAKE_SOURCE_DIR}/packaging/corrald.h2m --output=${CORRAL_DOCS_DIR}/corrald.8
            $<TARGET_FILE:corrald>
    COMMAND gzip -9nf --keep ${CORRAL_DOCS_DIR}/corrald.8
    DEPENDS corrald ${CMAKE_SOURCE_DIR}/packaging/corrald.h2m
    COMMENT "Generating corrald(8) from corrald --help (help2man)")
  list(APPEND generated_docs ${CORRAL_DOCS_DIR}/corrald.8.gz)
  install(FILES ${CORRAL_DOCS_DIR}/corrald.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
else()
  message(WARNING "help2man not found (scripts/install-deps installs it): no corrald(8) man page")
endif()
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
