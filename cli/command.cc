// Walking the command tree: group help, leaf option parsing (Boost.Program_options), usage errors with the
// usage of the command at fault, and the flag values the CLI parses itself (ports, numbers).
#include <algorithm>
#include <charconv>
#include <iostream>
#include <sstream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

// program_options wraps help at 80 columns by default; our summaries are written for wider lines.
constexpr unsigned kHelpWidth = 110;

}  // namespace

po::options_description commonOptionsDescription() {
  po::options_description options("Common options", kHelpWidth, kHelpWidth / 2);
  options.add_options()                                           //
      ("json", "print corrald's JSON answer instead of a table")  //
      ("socket", po::value<std::string>()->value_name("PATH"),
       "corrald's socket (default: $CORRAL_SOCKET, else /run/corral/corrald.sock)")  //
      ("help,h", "show this help");
  return options;
}

po::options_description leafOptionsDescription(const Command& command) {
  po::options_description own("Options", kHelpWidth, kHelpWidth / 2);
  if (command.addOptions) command.addOptions(own);
  return own;
}

std::string usageLine(const Command& command, const std::string& path) {
  std::string line = "Usage: " + path;
  for (const Argument& argument : command.arguments) line += " " + argument.name;
  if (command.lastArgumentRepeats && !command.arguments.empty())
    line += " [" + command.arguments.back().name + "...]";
  if (!command.synopsis.empty()) line += " " + command.synopsis;
  return line + " [--json] [--socket PATH]";
}

namespace {

std::string describe(const po::options_description& options) {
  std::ostringstream text;
  text << options;
  return text.str();
}

void printLeafHelp(std::ostream& out, const Command& command, const std::string& path,
                   const po::options_description& own, const po::options_description& common) {
  out << usageLine(command, path) << "\n\n" << command.summary << "\n";
  if (!command.arguments.empty()) {
    size_t width = 0;
    for (const Argument& argument : command.arguments) width = std::max(width, argument.name.size());
    out << "\nArguments:\n";
    for (const Argument& argument : command.arguments) {
      out << fmt::format("  {:<{}}  {}\n", argument.name, width, argument.help);
    }
  }
  if (!own.options().empty()) out << "\n" << describe(own);
  out << "\n" << describe(common);
}

void printGroupHelp(std::ostream& out, const Command& command, const std::string& path) {
  out << "Usage: " << path << " COMMAND [ARGUMENTS] [OPTIONS]\n\n" << command.summary << "\n\nCommands:\n";
  size_t width = 0;
  for (const Command& sub : command.subcommands) width = std::max(width, sub.name.size());
  for (const Command& sub : command.subcommands)
    out << fmt::format("  {:<{}}  {}\n", sub.name, width, sub.summary);
  if (!command.epilog.empty()) out << "\n" << command.epilog;
  out << "\nRun \"" << path << " COMMAND --help\" for the arguments and options of each.\n";
}

int runLeaf(const Command& command, const std::string& path, const std::vector<std::string>& args,
            const GlobalOptions& global) {
  po::options_description own = leafOptionsDescription(command);
  po::options_description common = commonOptionsDescription();
  po::options_description hidden;
  hidden.add_options()("argument", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("argument", -1);
  po::options_description all;
  all.add(own).add(common).add(hidden);

  std::vector<std::string> trailing;
  bool sawSeparator = false;
  std::vector<std::string> ownArgs = args;
  if (command.takesCommand) {
    // The command keeps its own flags: `corral run -- sh -c 'exit 5'` must not parse "-c".
    auto separator = std::find(ownArgs.begin(), ownArgs.end(), "--");
    if (separator != ownArgs.end()) {
      sawSeparator = true;
      trailing.assign(separator + 1, ownArgs.end());
      ownArgs.erase(separator, ownArgs.end());
    }
  }

  try {
    po::variables_map options;
    po::store(po::command_line_parser(ownArgs).options(all).positional(positional).run(), options);
    po::notify(options);
    if (options.count("help")) {
      printLeafHelp(std::cout, command, path, own, common);
      return 0;
    }
    std::vector<std::string> values;
    if (options.count("argument")) values = options["argument"].as<std::vector<std::string>>();
    if (values.size() < command.arguments.size()) {
      throw UsageError(fmt::format("missing {}", command.arguments[values.size()].name));
    }
    if (command.takesCommand && values.size() > command.arguments.size()) {
      throw UsageError(fmt::format("the command to run goes after \"--\": {} ... -- {}", path,
                                   values[command.arguments.size()]));
    }
    if (values.size() > command.arguments.size() && !command.lastArgumentRepeats) {
      throw UsageError(fmt::format("unexpected argument \"{}\"", values[command.arguments.size()]));
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const Argument& argument = command.arguments[std::min(i, command.arguments.size() - 1)];
      if (values[i].empty()) throw UsageError(fmt::format("{} must not be empty", argument.name));
    }
    GlobalOptions effective = global;
    if (options.count("json")) effective.json = true;
    if (options.count("socket")) effective.socketPath = options["socket"].as<std::string>();
    if (command.takesCommand && !command.commandOptional && (!sawSeparator || trailing.empty())) {
      throw UsageError("no command given: put it after \"--\", e.g. -- echo hi");
    }
    return command.run(Invocation{effective, std::move(values), std::move(options), std::move(trailing)});
  } catch (const po::error& e) {
    std::cerr << "corral: " << e.what() << "\n"
              << usageLine(command, path) << "\n(see \"" << path << " --help\")\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "corral: " << e.what() << "\n"
              << usageLine(command, path) << "\n(see \"" << path << " --help\")\n";
    return 2;
  }
}

}  // namespace

Command leaf(std::string name, std::string summary, std::vector<Argument> arguments, std::string synopsis,
             std::function<void(po::options_description&)> addOptions,
             std::function<int(const Invocation&)> run) {
  Command command;
  command.name = std::move(name);
  command.summary = std::move(summary);
  command.arguments = std::move(arguments);
  command.synopsis = std::move(synopsis);
  command.addOptions = std::move(addOptions);
  command.run = std::move(run);
  return command;
}

Command group(std::string name, std::string summary, std::vector<Command> subcommands) {
  Command command;
  command.name = std::move(name);
  command.summary = std::move(summary);
  command.subcommands = std::move(subcommands);
  return command;
}

int dispatch(const Command& command, const std::string& path, std::vector<std::string> args,
             const GlobalOptions& global) {
  if (command.subcommands.empty()) return runLeaf(command, path, args, global);
  if (args.empty()) {
    std::cerr << "corral: " << path << " needs a command\n\n";
    printGroupHelp(std::cerr, command, path);
    return 2;
  }
  const std::string& first = args.front();
  if (first == "--help" || first == "-h" || first == "help") {
    printGroupHelp(std::cout, command, path);
    return 0;
  }
  for (const Command& sub : command.subcommands) {
    if (sub.name == first) {
      std::string subPath = path + " " + first;
      args.erase(args.begin());
      return dispatch(sub, subPath, std::move(args), global);
    }
  }
  if (first.starts_with("-")) {
    std::cerr << "corral: " << path << " takes the command first and options after it (\"" << first
              << "\" came first)\n\n";
  } else {
    std::cerr << "corral: unknown command \"" << first << "\" for \"" << path << "\"\n\n";
  }
  printGroupHelp(std::cerr, command, path);
  return 2;
}

std::optional<std::string> Invocation::value(const std::string& name) const {
  if (!options.count(name)) return std::nullopt;
  return options[name].as<std::string>();
}

std::string Invocation::requiredValue(const std::string& name) const {
  std::optional<std::string> found = value(name);
  if (!found) throw UsageError(fmt::format("--{} is required", name));
  return *found;
}

namespace {

std::optional<int64_t> wholeNumber(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<int64_t> portNumber(std::string_view text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos || text.size() > 5) {
    return std::nullopt;
  }
  std::optional<int64_t> value = wholeNumber(text);
  if (!value || *value > 65535) return std::nullopt;
  return value;
}

}  // namespace

PortFlag parsePortFlag(std::string_view flag, std::string_view text) {
  size_t dash = text.find('-');
  std::string_view fromText = text.substr(0, dash);
  std::string_view toText = dash == std::string_view::npos ? fromText : text.substr(dash + 1);
  std::optional<int64_t> from = portNumber(fromText);
  std::optional<int64_t> to = portNumber(toText);
  if (!from || !to) {
    bool looksNumeric = text.find_first_not_of("0123456789-") == std::string_view::npos;
    throw UsageError(fmt::format(
        "{}: \"{}\" is not {}", flag, text,
        looksNumeric ? "a port or range within 0-65535" : "a port (22) or a port range (1000-2000)"));
  }
  return {*from, *to};
}

int64_t parseIntegerFlag(std::string_view flag, std::string_view text) {
  std::optional<int64_t> value = wholeNumber(text);
  if (!value) throw UsageError(fmt::format("{}: \"{}\" is not a whole number", flag, text));
  return *value;
}

std::optional<std::string> oneOf(const Invocation& invocation, std::initializer_list<std::string> flags,
                                 bool required) {
  std::optional<std::string> chosen;
  std::string names;
  for (const std::string& flag : flags) {
    names += fmt::format("{}--{}", names.empty() ? "" : ", ", flag);
    if (!invocation.flag(flag)) continue;
    if (chosen) throw UsageError(fmt::format("--{} and --{} cannot be used together", *chosen, flag));
    chosen = flag;
  }
  if (required && !chosen) throw UsageError(fmt::format("one of {} is required", names));
  return chosen;
}

Argument nameArgument(api::ObjectKind kind) {
  return {"NAME", fmt::format("the {}'s name", schema::objectKindName(kind))};
}

}  // namespace corral::cli
