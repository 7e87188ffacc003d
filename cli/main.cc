// `corral`, the command-line client of corrald: global options, then one subcommand group per object kind.
// Every command builds an api::Request and sends it over corrald's Unix socket; nothing here touches the
// kernel.
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "cli/cli.h"

namespace {

using corral::cli::Command;
namespace po = boost::program_options;

po::options_description globalOptionsDescription() {
  po::options_description options(
      "Global options (before the command; --json and --socket also work after it)", 110, 55);
  options.add_options()  //
      ("socket", po::value<std::string>()->value_name("PATH"),
       "corrald's socket (default: $CORRAL_SOCKET, else /run/corral/corrald.sock)")  //
      ("json", "print corrald's JSON answers instead of tables")                     //
      ("help,h", "show this help")                                                   //
      ("version", "print corral's version");
  return options;
}

Command rootCommand(const po::options_description& globalOptions) {
  Command root = corral::cli::group(
      "corral",
      "corral: a playground for AWS-style networks on one Linux host, as a thin client of corrald.\n"
      "A VPC is a building, its subnets are floors, route tables are the stairs and corridors, an internet\n"
      "gateway is the front door, and security groups and network ACLs are the guards.\n"
      "Instances are the tenants: a container shares the host's kernel, starts in milliseconds and is\n"
      "cattle, not a pet (run it, throw it away, run another).",
      {corral::cli::infoCommand(),
       corral::cli::cidrCommand(),
       corral::cli::vpcCommand(),
       corral::cli::subnetCommand(),
       corral::cli::routeTableCommand(),
       corral::cli::internetGatewayCommand(),
       corral::cli::natGatewayCommand(),
       corral::cli::securityGroupCommand(),
       corral::cli::networkAclCommand(),
       corral::cli::netCommand(),
       corral::cli::traceCommand(),
       corral::cli::compareCommand(),
       corral::cli::imageCommand(),
       corral::cli::snapshotCommand(),
       corral::cli::runCommand(),
       corral::cli::psCommand(),
       corral::cli::logsCommand(),
       corral::cli::execCommand(),
       corral::cli::stopCommand(),
       corral::cli::startCommand(),
       corral::cli::removeInstanceCommand(),
       corral::cli::inspectCommand()});
  std::ostringstream text;
  text << globalOptions;
  root.epilog = text.str();
  return root;
}

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
