// The bash completion and the man page generated from the CLI's command table (cli/docs.cc): every command
// and every option of the table is in them, checked by walking the table here independently of the
// generator, and the completion script works when bash runs it.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

// The entries of one `declare -gA NAME=( ['key']='words' ... )` of the script.
std::map<std::string, std::set<std::string>> bashTable(const std::string& script, const std::string& name) {
  std::map<std::string, std::set<std::string>> table;
  std::istringstream lines(script);
  std::string line;
  bool inside = false;
  static const std::regex entry(R"(^  \['([^']*)'\]='([^']*)'$)");
  while (std::getline(lines, line)) {
    if (line == "declare -gA " + name + "=(") {
      inside = true;
      continue;
    }
    if (!inside) continue;
    if (line == ")") break;
    std::smatch match;
    EXPECT_TRUE(std::regex_match(line, match, entry)) << name << ": unexpected line: " << line;
    if (match.empty()) continue;
    std::istringstream words(match[2].str());
    std::set<std::string>& set = table[match[1].str()];
    for (std::string word; words >> word;) set.insert(word);
  }
  return table;
}

struct TableOption {
  std::vector<std::string> names;
  bool takesValue = false;
};

std::vector<TableOption> tableOptions(const po::options_description& description) {
  std::vector<TableOption> options;
  for (const auto& option : description.options()) {
    TableOption found;
    found.names.push_back("--" + option->long_name());
    std::string formatted = option->format_name();  // "-h [ --help ]" or "--cidr"
    if (formatted.size() > 2 && formatted[0] == '-' && formatted[1] != '-')
      found.names.push_back(formatted.substr(0, 2));
    found.takesValue = option->semantic()->max_tokens() > 0;
    options.push_back(found);
  }
  return options;
}

void forEachCommand(const Command& command, const std::string& path,
                    const std::function<void(const Command&, const std::string&)>& visit) {
  visit(command, path);
  for (const Command& sub : command.subcommands) forEachCommand(sub, path + " " + sub.name, visit);
}

class GeneratedDocs : public ::testing::Test {
 protected:
  po::options_description global = globalOptionsDescription();
  Command root = rootCommand(global);
};

TEST_F(GeneratedDocs, CompletionNamesEveryCommandAndOptionOfTheTable) {
  std::string script = bashCompletion(root, global);
  auto subcommands = bashTable(script, "_corral_subcommands");
  auto options = bashTable(script, "_corral_options");
  auto valued = bashTable(script, "_corral_valued");
  int leaves = 0, optionsSeen = 0;
  forEachCommand(root, "corral", [&](const Command& command, const std::string& path) {
    if (!command.subcommands.empty()) {
      for (const Command& sub : command.subcommands) {
        EXPECT_TRUE(subcommands[path].contains(sub.name))
            << "\"" << path << "\" lacks its command " << sub.name;
      }
      EXPECT_EQ(subcommands[path].size(), command.subcommands.size()) << path;
      EXPECT_TRUE(options[path].contains("--help")) << path;
      return;
    }
    ++leaves;
    EXPECT_FALSE(subcommands.contains(path)) << path << " is a leaf";
    std::vector<TableOption> all = tableOptions(leafOptionsDescription(command));
    std::vector<TableOption> common = tableOptions(commonOptionsDescription());
    all.insert(all.end(), common.begin(), common.end());
    for (const TableOption& option : all) {
      for (const std::string& name : option.names) {
        ++optionsSeen;
        EXPECT_TRUE(options[path].contains(name)) << "\"" << path << "\" lacks its option " << name;
        EXPECT_EQ(valued[path].contains(name), option.takesValue) << path << " " << name;
      }
    }
  });
  for (const TableOption& option : tableOptions(global)) {
    for (const std::string& name : option.names) {
      EXPECT_TRUE(options["corral"].contains(name)) << "the global option " << name << " is missing";
    }
  }
  EXPECT_GT(leaves, 50);
  EXPECT_GT(optionsSeen, 300);
}

TEST_F(GeneratedDocs, ManPageHasASectionWithEveryOptionForEveryCommand) {
  std::string page = manPage(root, global, "1.2.3", "2026-12-04");
  EXPECT_NE(page.find(".TH CORRAL 1 \"2026-12-04\" \"corral 1.2.3\""), std::string::npos);
  auto roffName = [](const std::string& name) { return std::regex_replace(name, std::regex("-"), "\\-"); };
  forEachCommand(root, "corral", [&](const Command& command, const std::string& path) {
    if (path == "corral") return;
    size_t section = page.find(".SS \"" + path + "\"\n");
    ASSERT_NE(section, std::string::npos) << "no section for " << path;
    size_t next = page.find(".SS ", section + 1);
    std::string text = page.substr(section, next == std::string::npos ? std::string::npos : next - section);
    for (const Command& sub : command.subcommands) {
      EXPECT_NE(text.find("\\fB" + sub.name + "\\fR"), std::string::npos) << path << " " << sub.name;
    }
    if (!command.subcommands.empty()) return;
    EXPECT_NE(text.find(command.summary.substr(0, 20)), std::string::npos) << path;
    for (const TableOption& option : tableOptions(leafOptionsDescription(command))) {
      for (const std::string& name : option.names) {
        EXPECT_NE(text.find("\\fB" + roffName(name) + "\\fR"), std::string::npos) << path << " " << name;
      }
    }
  });
  for (const TableOption& option : tableOptions(global)) {
    EXPECT_NE(page.find("\\fB" + roffName(option.names[0]) + "\\fR"), std::string::npos) << option.names[0];
  }
}

// Runs the script in bash as the completion machinery would: COMP_WORDS/COMP_CWORD set, _corral called.
std::string complete(const std::string& script, const std::vector<std::string>& words) {
  char path[] = "/tmp/corral-completion-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << script;
  std::string wordList;
  for (const std::string& word : words) wordList += " '" + word + "'";
  std::string command =
      "bash --norc --noprofile -c 'source \"$0\"; COMP_WORDS=(\"$@\"); COMP_CWORD=$((${#COMP_WORDS[@]} - "
      "1)); "
      "_corral; printf \"%s\\n\" \"${COMPREPLY[@]}\"' " +
      std::string(path) + wordList;
  std::string output;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    EXPECT_EQ(::pclose(pipe), 0) << command;
  }
  ::unlink(path);
  return output;
}

TEST_F(GeneratedDocs, CompletionInBashOffersCommandsOptionsAndChoices) {
  std::string script = bashCompletion(root, global);
  EXPECT_EQ(complete(script, {"corral", "vp"}), "vpc\n");
  EXPECT_EQ(complete(script, {"corral", "vpc", "cr"}), "create\n");
  EXPECT_EQ(complete(script, {"corral", "vpc", "create", "prod", "--ci"}), "--cidr\n");
  // Global options and their values are skipped on the way to the command.
  EXPECT_EQ(complete(script, {"corral", "--socket", "/tmp/s", "--json", "vpc", "l"}), "ls\n");
  EXPECT_EQ(complete(script, {"corral", "run", "--machine", ""}), "microvm\npc\n");
  EXPECT_EQ(complete(script, {"corral", "--ver"}), "--version\n");
  // After "--" comes the instance's own command: no corral words.
  EXPECT_EQ(complete(script, {"corral", "run", "--", "--ci"}), "\n");
}

}  // namespace
}  // namespace corral::cli
