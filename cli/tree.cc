// The command tree of `corral`: every group and leaf, and the global options. --help, the man page and the
// bash completion (cli/docs.cc) are all walks of this one tree, so none of them can miss a command.
#include <sstream>

#include "cli/cli.h"

namespace corral::cli {

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
  Command root = group(
      "corral",
      "corral: a playground for AWS-style networks on one Linux host, as a thin client of corrald.\n"
      "A VPC is a building, its subnets are floors, route tables are the stairs and corridors, an internet\n"
      "gateway is the front door, and security groups and network ACLs are the guards.\n"
      "Instances are the tenants: a container shares the host's kernel, starts in milliseconds and is\n"
      "cattle, not a pet (run it, throw it away, run another).",
      {infoCommand(),       cidrCommand(),         vpcCommand(),
       subnetCommand(),     routeTableCommand(),   internetGatewayCommand(),
       natGatewayCommand(), peeringCommand(),      securityGroupCommand(),
       networkAclCommand(), loadBalancerCommand(), targetGroupCommand(),
       netCommand(),        traceCommand(),        reachCommand(),
       flowLogsCommand(),   compareCommand(),      imageCommand(),
       snapshotCommand(),   runCommand(),          psCommand(),
       logsCommand(),       execCommand(),         consoleCommand(),
       stopCommand(),       startCommand(),        removeInstanceCommand(),
       inspectCommand(),    groupCommand(),        clusterCommand()});
  std::ostringstream text;
  text << globalOptions;
  root.epilog = text.str();
  return root;
}

}  // namespace corral::cli
