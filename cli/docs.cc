// What is generated from the command tree (cli/tree.cc): the bash completion script and the man page
// corral(1). Both walk the same tree --help prints, so a new command or option is in them by construction.
#include <algorithm>
#include <sstream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

struct OptionWords {
  std::vector<std::string> names;  // "--cidr", and "-h" for a short name
  bool takesValue = false;
  std::string valueName;  // "CIDR", "microvm|pc"
};

OptionWords optionWords(const po::option_description& option) {
  OptionWords words;
  if (!option.long_name().empty()) words.names.push_back("--" + option.long_name());
  // Boost names the short form only through its display name: "-h" when there is one.
  std::string shortName = option.canonical_display_name(po::command_line_style::allow_dash_for_short);
  if (shortName.size() == 2 && shortName[0] == '-') words.names.push_back(shortName);
  words.takesValue = option.semantic()->max_tokens() > 0;
  if (words.takesValue) {
    words.valueName = option.semantic()->name();
    words.valueName = words.valueName.substr(0, words.valueName.find(' '));  // drop " (=default)"
  }
  return words;
}

std::vector<OptionWords> optionsOf(const po::options_description& description) {
  std::vector<OptionWords> all;
  for (const auto& option : description.options()) all.push_back(optionWords(*option));
  return all;
}

// Every node of the tree with its path from the root ("" for the root, "vpc create").
void walk(const Command& command, const std::string& path,
          const std::function<void(const Command&, const std::string&)>& visit) {
  visit(command, path);
  for (const Command& sub : command.subcommands)
    walk(sub, path.empty() ? sub.name : path + " " + sub.name, visit);
}

// A bash word in single quotes.
std::string shellQuoted(std::string_view text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& word : words) text += (text.empty() ? "" : " ") + word;
  return text;
}

// The value words a completion can offer: "microvm|pc" lists them; "PATH", "CIDR" or "corral|debian|PATH"'s
// PATH are typed by the user (or completed as file names).
std::vector<std::string> valueChoices(const std::string& valueName) {
  std::vector<std::string> choices;
  if (valueName.find('|') == std::string::npos) return choices;
  std::istringstream parts(valueName);
  std::string part;
  while (std::getline(parts, part, '|')) {
    bool lowerWord = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    });
    if (lowerWord) choices.push_back(part);
  }
  return choices;
}

// roff: a backslash is \e, a line may not start with '.' or '\'', and '-' in option names is \-.
std::string roff(std::string_view text) {
  std::string escaped;
  bool lineStart = true;
  for (char c : text) {
    if (lineStart && (c == '.' || c == '\'')) escaped += "\\&";
    if (c == '\\') {
      escaped += "\\e";
    } else {
      escaped += c;
    }
    lineStart = c == '\n';
  }
  return escaped;
}

std::string roffOptionName(std::string_view name) {
  std::string escaped;
  for (char c : name) escaped += c == '-' ? std::string("\\-") : std::string(1, c);
  return escaped;
}

void manOptions(std::ostringstream& out, const po::options_description& description) {
  for (const auto& option : description.options()) {
    OptionWords words = optionWords(*option);
    std::string names;
    for (const std::string& name : words.names) {
      names += (names.empty() ? "" : ", ") + std::string("\\fB") + roffOptionName(name) + "\\fR";
    }
    out << ".TP\n" << names;
    if (words.takesValue) out << " \\fI" << roff(option->format_parameter()) << "\\fR";
    out << "\n" << roff(option->description()) << "\n";
  }
}

}  // namespace

std::string bashCompletion(const Command& root, const po::options_description& globalOptions) {
  std::ostringstream subcommands, options, valued, choices;
  auto addValued = [&](const std::string& path, const std::vector<OptionWords>& all) {
    std::vector<std::string> names;
    for (const OptionWords& words : all) {
      if (!words.takesValue) continue;
      for (const std::string& name : words.names) {
        names.push_back(name);
        std::vector<std::string> offered = valueChoices(words.valueName);
        if (!offered.empty())
          choices << "  [" << shellQuoted(path + " " + name) << "]=" << shellQuoted(joined(offered)) << "\n";
      }
    }
    valued << "  [" << shellQuoted(path) << "]=" << shellQuoted(joined(names)) << "\n";
  };
  auto addOptions = [&](const std::string& path, const std::vector<OptionWords>& all) {
    std::vector<std::string> names;
    for (const OptionWords& words : all) names.insert(names.end(), words.names.begin(), words.names.end());
    options << "  [" << shellQuoted(path) << "]=" << shellQuoted(joined(names)) << "\n";
    addValued(path, all);
  };
  // Keys are the command path from "corral" on (bash's associative arrays take no empty key).
  walk(root, "", [&](const Command& command, const std::string& relative) {
    const std::string path = relative.empty() ? "corral" : "corral " + relative;
    if (!command.subcommands.empty()) {
      std::vector<std::string> names;
      for (const Command& sub : command.subcommands) names.push_back(sub.name);
      subcommands << "  [" << shellQuoted(path) << "]=" << shellQuoted(joined(names)) << "\n";
      // A group takes --help (the root also the global options, before the command).
      if (relative.empty()) {
        addOptions(path, optionsOf(globalOptions));
      } else {
        options << "  [" << shellQuoted(path) << "]='--help -h'\n";
        valued << "  [" << shellQuoted(path) << "]=''\n";
      }
      return;
    }
    std::vector<OptionWords> all = optionsOf(leafOptionsDescription(command));
    std::vector<OptionWords> common = optionsOf(commonOptionsDescription());
    all.insert(all.end(), common.begin(), common.end());
    addOptions(path, all);
  });

  std::ostringstream script;
  script << R"(# bash completion for corral: every command and option of its command table (cli/tree.cc).
# Generated by corral-docgen at build time; do not edit.

declare -gA _corral_subcommands=(
)" << subcommands.str()
         << R"()
declare -gA _corral_options=(
)" << options.str()
         << R"()
declare -gA _corral_valued=(
)" << valued.str()
         << R"()
declare -gA _corral_choices=(
)" << choices.str()
         << R"()

_corral() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local path=corral word i=1
  COMPREPLY=()
  # The command path: words that name a subcommand of the group reached so far. Options and their values
  # are skipped; after "--" comes the instance's command, completed as files.
  while ((i < COMP_CWORD)); do
    word=${COMP_WORDS[i]}
    if [[ $word == -- ]]; then
      compopt -o default 2>/dev/null
      return 0
    fi
    if [[ $word == -* ]]; then
      [[ " ${_corral_valued[$path]} " == *" $word "* ]] && ((i++))
    elif [[ -n ${_corral_subcommands[$path]+set} && " ${_corral_subcommands[$path]} " == *" $word "* ]]; then
      path="$path $word"
    fi
    ((i++))
  done
  local prev=""
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  if [[ $prev == -* && " ${_corral_valued[$path]} " == *" $prev "* ]]; then
    if [[ -n ${_corral_choices["$path $prev"]+set} ]]; then
      mapfile -t COMPREPLY < <(compgen -W "${_corral_choices["$path $prev"]}" -- "$cur")
    else
      compopt -o default 2>/dev/null
    fi
    return 0
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${_corral_options[$path]}" -- "$cur")
  elif [[ -n ${_corral_subcommands[$path]+set} ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${_corral_subcommands[$path]}" -- "$cur")
  else
    compopt -o default 2>/dev/null
  fi
  return 0
}
complete -F _corral corral
)";
  return script.str();
}

std::string manPage(const Command& root, const po::options_description& globalOptions,
                    std::string_view version, std::string_view date) {
  std::ostringstream out;
  out << ".\\\" corral(1), generated by corral-docgen from the CLI's command table (cli/tree.cc); do not "
         "edit.\n";
  out << ".TH CORRAL 1 \"" << date << "\" \"corral " << version << "\" \"User Commands\"\n";
  out << ".SH NAME\ncorral \\- the command-line client of corrald: VPC-style networks, containers and VMs\n";
  out << ".SH SYNOPSIS\n.B corral\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR] "
         "[\\fIOPTIONS\\fR]\n";
  out << ".SH DESCRIPTION\n" << roff(root.summary) << "\n";
  out << ".PP\nEvery command sends one request to corrald over its Unix socket and prints the answer as a "
         "table, "
         "or as corrald's JSON with \\fB\\-\\-json\\fR. \\fBcorral COMMAND \\-\\-help\\fR prints the section "
         "of "
         "this page that describes COMMAND.\n";
  out << ".SH GLOBAL OPTIONS\nThese come before the command (\\fB\\-\\-json\\fR and \\fB\\-\\-socket\\fR "
         "also "
         "after it).\n";
  manOptions(out, globalOptions);
  out << ".SH COMMON OPTIONS\nEvery command takes these.\n";
  manOptions(out, commonOptionsDescription());
  out << ".SH COMMANDS\n";
  walk(root, "", [&](const Command& command, const std::string& path) {
    if (path.empty()) return;
    out << ".SS \"corral " << path << "\"\n";
    if (!command.subcommands.empty()) {
      out << roff(command.summary) << ".\n.PP\nCommands: ";
      std::vector<std::string> names;
      for (const Command& sub : command.subcommands) names.push_back("\\fB" + sub.name + "\\fR");
      for (size_t i = 0; i < names.size(); ++i) out << (i == 0 ? "" : ", ") << names[i];
      out << ".\n";
      return;
    }
    std::string usage = usageLine(command, "corral " + path);
    usage = usage.substr(usage.find(' ') + 1);  // without "Usage: "
    out << ".PP\n\\fB" << roff(usage) << "\\fR\n.PP\n" << roff(command.summary) << "\n";
    if (command.takesCommand) {
      out << ".PP\nEverything after \\fB\\-\\-\\fR is the command to run, never parsed as options.\n";
    }
    for (const Argument& argument : command.arguments) {
      out << ".TP\n\\fI" << roff(argument.name) << "\\fR\n" << roff(argument.help) << "\n";
    }
    manOptions(out, leafOptionsDescription(command));
  });
  out << ".SH ENVIRONMENT\n.TP\n.B CORRAL_SOCKET\ncorrald's socket when \\fB\\-\\-socket\\fR is not given.\n";
  out << ".SH EXIT STATUS\n0 when the request succeeded (\\fBrun\\fR and \\fBexec\\fR: the command's exit "
         "code, "
         "128+signal when it was killed), 1 when corrald refused or failed it, 2 for a usage error.\n";
  out << ".SH FILES\n.TP\n.I /run/corral/corrald.sock\ncorrald's socket (mode 0660, group \\fBcorral\\fR: "
         "its "
         "members may use corral without root).\n";
  out << ".SH SEE ALSO\n\\fBcorrald\\fR(8); the API reference and README in /usr/share/doc/corral.\n";
  return out.str();
}

}  // namespace corral::cli
