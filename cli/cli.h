// The pieces every `corral` subcommand shares: the command tree with its help, the parsed invocation handed
// to a leaf, flag-value parsing and the human/JSON output helpers. The CLI only talks HTTP to corrald.
#pragma once

#include <csignal>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// GCC 12 at -O2 reports a null dereference inside program_options' typed_value<std::string>::notify (its
// any_cast is checked; a false positive in Boost's code). It is reported where the template is instantiated,
// which is every file of the CLI, so it is silenced for the files that include this header.
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/client.h"
#include "api/terminal.h"
#include "core/error.h"

namespace corral::cli {

namespace po = boost::program_options;
using nlohmann::json;

struct GlobalOptions {
  std::string socketPath;
  bool json = false;
};

// Bad command-line input. The dispatcher prints it with the usage of the command at fault and exits 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What one leaf command gets to work with.
struct Invocation {
  const GlobalOptions& global;
  std::vector<std::string> arguments;  // the positional arguments, in Command::arguments order
  po::variables_map options;
  std::vector<std::string> command;  // what followed "--", for commands with Command::takesCommand

  bool flag(const std::string& name) const { return options.count(name) > 0; }
  std::optional<std::string> value(const std::string& name) const;
  // The value of a flag the command cannot do without; a UsageError naming it when absent.
  std::string requiredValue(const std::string& name) const;
};

struct Argument {
  std::string name;  // "NAME", "TABLE"
  std::string help;
};

// A node of the command tree: a group (with subcommands) or a leaf (with run).
struct Command {
  std::string name;
  std::string summary;  // one line, in the cloud metaphor's words
  // Leaf only:
  std::vector<Argument> arguments;
  std::string synopsis;  // the options part of the usage line: "--cidr CIDR"
  std::function<void(po::options_description&)> addOptions;
  std::function<int(const Invocation&)> run;
  // Everything after the first "--" is a command to run inside an instance, never parsed as options.
  bool takesCommand = false;
  bool commandOptional = false;  // with takesCommand: "-- CMD" may be left out (corral run --vm)
  // The last argument may be given several times (`corral rm a b c`, like docker's): every value is in
  // Invocation::arguments, from that argument's position on.
  bool lastArgumentRepeats = false;
  // Group only:
  std::vector<Command> subcommands;
  std::string epilog;  // printed at the end of the group's help (the global options, for the root)
};

Command leaf(std::string name, std::string summary, std::vector<Argument> arguments, std::string synopsis,
             std::function<void(po::options_description&)> addOptions,
             std::function<int(const Invocation&)> run);
Command group(std::string name, std::string summary, std::vector<Command> subcommands);

// Runs `command` (reached as `path`, e.g. "corral vpc") with the arguments that follow it.
// Returns the process exit code: 0, 1 for a failed request, 2 for a usage error.
int dispatch(const Command& command, const std::string& path, std::vector<std::string> args,
             const GlobalOptions& global);

// ---- The command tree (cli/tree.cc) and what is generated from it ----
po::options_description globalOptionsDescription();
Command rootCommand(const po::options_description& globalOptions);
// A leaf's own options, and the options every leaf takes (--json, --socket, --help), as --help lists them.
po::options_description leafOptionsDescription(const Command& leaf);
po::options_description commonOptionsDescription();
// "Usage: corral vpc create NAME --cidr CIDR [--json] [--socket PATH]"
std::string usageLine(const Command& leaf, const std::string& path);
// cli/docs.cc: the bash completion script for every command and option, and the man page corral(1) with
// every command's usage, summary, arguments and options (corral-docgen writes both at build time).
std::string bashCompletion(const Command& root, const po::options_description& globalOptions);
std::string manPage(const Command& root, const po::options_description& globalOptions,
                    std::string_view version, std::string_view date);

// ---- Subcommand groups (one file each) ----
Command infoCommand();
Command cidrCommand();
Command vpcCommand();
Command subnetCommand();
Command routeTableCommand();
Command internetGatewayCommand();
Command natGatewayCommand();
Command peeringCommand();
Command securityGroupCommand();
Command networkAclCommand();
Command loadBalancerCommand();  // cli/lb.cc: `corral lb`
Command targetGroupCommand();   // cli/lb.cc: `corral tg`
Command netCommand();           // cli/net.cc: `corral net show VPC`
Command traceCommand();         // cli/trace.cc: `corral trace SUBNET|INSTANCE`
Command reachCommand();         // cli/reach.cc: `corral reach SRC DST`
Command flowLogsCommand();      // cli/flow_logs.cc: `corral flow-logs VPC|SUBNET|INSTANCE`
Command compareCommand();       // cli/compare.cc: `corral compare`
Command imageCommand();         // cli/image.cc: `corral image ls|pull|import|build|inspect|rm`
Command snapshotCommand();      // cli/snapshot.cc: `corral snapshot ls|rm`
Command clusterCommand();       // cli/cluster.cc: `corral cluster init|join|ls|token|set|leave`
// Instances (cli/run.cc, cli/instances.cc): top-level verbs, like `docker run` / `docker ps`.
Command runCommand();
Command psCommand();
Command logsCommand();
Command execCommand();
Command stopCommand();
Command startCommand();
Command removeInstanceCommand();
Command inspectCommand();
Command consoleCommand();  // cli/instances.cc: `corral console NAME`
Command groupCommand();    // cli/group.cc: `corral group create|ls|show|scale|policy|events|rm`
// cli/run.cc: the flags of an instance's spec that `corral run` and `corral group create` (its launch
// template) share, and the spec they give (run's own flags, like --name and --subnet, absent there).
void addInstanceTemplateOptions(po::options_description& options);
schema::InstanceSpec specFromFlags(const Invocation& invocation);
// cli/terminal.cc: one upgraded exec or console session with this terminal; corral's exit code. `detached`
// (when given) tells whether the user left a console with the detach key (the program still runs).
int runTerminal(const std::string& socketPath, api::TerminalTarget target, bool* detached = nullptr);

// ---- Flag values the CLI itself must understand ----

struct PortFlag {
  int64_t from = 0;
  int64_t to = 0;
};
// "22" or "1000-2000", each 0-65535. `flag` is how errors name the input: "--port".
PortFlag parsePortFlag(std::string_view flag, std::string_view text);
// Any whole number (the model checks the range and names the field).
int64_t parseIntegerFlag(std::string_view flag, std::string_view text);
// At most one of `flags` may be given; with `required`, exactly one.
std::optional<std::string> oneOf(const Invocation& invocation, std::initializer_list<std::string> flags,
                                 bool required);

// ---- Talking to corrald and printing ----

// Sends `request`; prints the daemon's JSON with --json, else calls `printHuman`. Returns the exit code.
int respond(const Invocation& invocation, const api::Request& request,
            const std::function<void(const json&)>& printHuman);
void printError(const Error& error);

// A value as a person reads it: strings bare, null "-", booleans yes/no, arrays comma-separated.
std::string displayText(const json& value);
std::string displayTime(const json& unixSeconds);
std::string displayPorts(const json& rule);
const json& field(const json& object, std::string_view key);  // null when absent

// "label: value" lines with the values aligned.
void printFields(const std::vector<std::pair<std::string, std::string>>& fields);

// Aligned columns; headers upper-case.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add(std::vector<std::string> row);
  bool empty() const { return rows_.empty(); }
  void print() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// The items of a list response ({"vpcs": [...]}, or a bare array).
const json& listItems(const json& response, api::ObjectKind kind);
// Prints `table`, or its header and `hint` when the list is empty.
void printList(const Table& table, std::string_view hint);

// ---- Instances (shared by cli/run.cc and cli/instances.cc) ----

// "running", "exited (0)", "killed (SIGTERM)", "oom-killed": what became of an instance, in one word or two.
std::string displayInstanceState(const json& instance);
// "12.3 ms", or "-" before the instance has booted.
std::string displayMilliseconds(const json& milliseconds);
// The exit code a shell would report for the instance's command: its code, or 128+signal.
int instanceExitCode(const json& instance);
// Prints the instance's output from the start as it arrives (GET logs every ~50 ms). Without `follow`, stops
// once caught up; with it, once the instance is no longer running and everything is read (eof). Stops early
// when `interrupted` becomes true. Returns the last logs answer (state, exit code), or the daemon's error.
Result<json> streamLogs(const api::Client& client, const std::string& name, bool follow,
                        const volatile sig_atomic_t* interrupted);
// Waits until a VM that is "starting" is ready (or has failed to boot), showing progress on a terminal
// (elapsed time, accelerator, the console's last line). Returns the instance as it is then; a boot that
// failed is the daemon's exit reason and note (the console's last lines) as an error.
Result<json> waitUntilReady(const api::Client& client, json instance,
                            const volatile sig_atomic_t* interrupted);
// "ready in 3.2 s (tcg: domain 310 ms + firmware 420 + kernel 1700 + userspace 800)" or the container's
// "running (ready in 12.3 ms)".
std::string displayReady(const json& instance);
// An exec result's stdout and stderr, written as they came, and a word when corrald cut or killed it.
void printExecOutput(const json& result);
// One whole number ≥ 0 for a flag: "-t -1", "--pids x" are usage errors naming the flag.
int64_t parseCountFlag(std::string_view flag, std::string_view text);

// ---- The ls / show / rm commands every kind has ----

Argument nameArgument(api::ObjectKind kind);

template <api::ObjectKind K>
Command showCommand(std::string summary, std::function<void(const json&)> printObject) {
  return leaf("show", std::move(summary), {nameArgument(K)}, "", nullptr,
              [printObject](const Invocation& invocation) {
                return respond(invocation, api::Get<K>{invocation.arguments[0]}, printObject);
              });
}

template <api::ObjectKind K>
Command removeCommand(std::string summary) {
  return leaf("rm", std::move(summary), {nameArgument(K)}, "", nullptr, [](const Invocation& invocation) {
    const std::string& name = invocation.arguments[0];
    return respond(invocation, api::Delete<K>{name},
                   [&](const json&) { fmt::print("deleted {} {}\n", schema::objectKindName(K), name); });
  });
}

// `row` turns one listed object into the table's cells; `hint` is shown under the header of an empty list.
template <api::ObjectKind K>
Command listCommand(std::string summary, std::vector<std::string> headers,
                    std::function<std::vector<std::string>(const json&)> row, std::string hint) {
  std::function<void(po::options_description&)> addOptions;
  if constexpr (K != api::ObjectKind::Vpc) {
    addOptions = [](po::options_description& options) {
      options.add_options()("vpc", po::value<std::string>()->value_name("VPC"), "only those in this VPC");
    };
  }
  return leaf("ls", std::move(summary), {}, K == api::ObjectKind::Vpc ? "" : "[--vpc VPC]", addOptions,
              [headers, row, hint](const Invocation& invocation) {
                api::List<K> request;
                if constexpr (K != api::ObjectKind::Vpc) request.vpc = invocation.value("vpc").value_or("");
                return respond(invocation, request, [&](const json& response) {
                  Table table(headers);
                  for (const json& item : listItems(response, K)) table.add(row(item));
                  printList(table, hint);
                });
              });
}

}  // namespace corral::cli
