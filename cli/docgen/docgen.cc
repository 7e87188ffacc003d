// corral-docgen: writes what the build generates from corral's command table (cli/tree.cc): the bash
// completion script or the man page corral(1). Run by CMake (packaging/install.cmake); not installed.
#include <cstring>
#include <fstream>
#include <iostream>

#include "cli/cli.h"

int main(int argc, char** argv) {
  using namespace corral::cli;
  po::options_description global = globalOptionsDescription();
  std::string text;
  const char* output = nullptr;
  if (argc == 3 && std::strcmp(argv[1], "bash-completion") == 0) {
    text = bashCompletion(rootCommand(global), global);
    output = argv[2];
  } else if (argc == 4 && std::strcmp(argv[1], "man") == 0) {
    text = manPage(rootCommand(global), global, CORRAL_VERSION, argv[2]);
    output = argv[3];
  } else {
    std::cerr << "usage: corral-docgen bash-completion OUTPUT | corral-docgen man DATE OUTPUT\n";
    return 2;
  }
  std::ofstream file(output, std::ios::trunc);
  file << text;
  file.close();
  if (!file) {
    std::cerr << "corral-docgen: cannot write \"" << output << "\": " << std::strerror(errno) << "\n";
    return 1;
  }
  return 0;
}
