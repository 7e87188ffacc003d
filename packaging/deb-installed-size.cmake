# Run by cpack after it built the .deb (CPACK_POST_BUILD_SCRIPTS, packaging/debian.cmake): rewrites the
# control file's Installed-Size as `du` counts the package's tree (symlinks as links, not as their
# targets), then packs the same tree again, owned by root. Nothing else of the package changes.
foreach(deb IN LISTS CPACK_PACKAGE_FILES)
  set(tree "${deb}.tree")
  file(REMOVE_RECURSE "${tree}")
  execute_process(COMMAND dpkg-deb -R "${deb}" "${tree}" COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND du -sk --apparent-size --exclude=DEBIAN "${tree}" OUTPUT_VARIABLE du COMMAND_ERROR_IS_FATAL ANY)
  string(REGEX MATCH "^[0-9]+" kilobytes "${du}")
  file(READ "${tree}/DEBIAN/control" control)
  string(REGEX REPLACE "Installed-Size: [0-9]+" "Installed-Size: ${kilobytes}" control "${control}")
  file(WRITE "${tree}/DEBIAN/control" "${control}")
  execute_process(COMMAND dpkg-deb --root-owner-group -Zxz --build "${tree}" "${deb}" OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  file(REMOVE_RECURSE "${tree}")
  message(STATUS "${deb}: Installed-Size ${kilobytes} KiB")
endforeach()
