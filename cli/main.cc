// `corral`, the command-line client of corrald: global options, then one subcommand group per object kind.
// Every command builds an api::Request and sends it over corrald's Unix socket; nothing here touches the
// kernel.
#include <cstdlib>
#include <iostream>

#include "cli/cli.h"

namespace {

using corral::cli::Command;
using corral::cli::globalOptionsDescription;
using corral::cli::rootCommand;
namespace po = boost::program_options;

// Global options end at the first word that is not one of them: that word is the command.
size_t commandIndex(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--socket") {
      ++i;  // its value
      continue;
    }
    if (!args[i].starts_with("-")) return i;
  }
  return args.size();
}

int run(const std::vector<std::string>& args) {
  po::options_description globalOptions = globalOptionsDescription();
  Command root = rootCommand(globalOptions);
  size_t split = commandIndex(args);
  std::vector<std::string> globalArgs(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(split));
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(split), args.end());

  po::variables_map options;
  try {
    po::store(po::command_line_parser(globalArgs).options(globalOptions).run(), options);
    po::notify(options);
  } catch (const po::error& e) {
    std::cerr << "corral: " << e.what() << "\n(see \"corral --help\")\n";
    return 2;
  }
  if (options.count("version")) {
    std::cout << "corral " << CORRAL_VERSION << "\n";
    return 0;
  }
  corral::cli::GlobalOptions global;
  const char* fromEnvironment = std::getenv("CORRAL_SOCKET");
  global.socketPath = fromEnvironment && *fromEnvironment ? fromEnvironment : corral::api::kDefaultSocketPath;
  if (options.count("socket")) global.socketPath = options["socket"].as<std::string>();
  global.json = options.count("json") > 0;
  // `corral --help vpc create` shows the same help as `corral vpc create --help`.
  if (options.count("help")) rest.push_back("--help");
  return corral::cli::dispatch(root, "corral", std::move(rest), global);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    // A daemon answer of an unexpected shape, or an allocation failure: say so rather than abort.
    std::cerr << "corral: " << e.what() << "\n";
    return 1;
  }
}
