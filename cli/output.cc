// How the CLI shows things: corrald's JSON with --json, else aligned tables and "key: value" lines; errors
// as "corral: message (field: x)" on stderr. Text from corrald reaches the terminal through terminalSafe
// (core/text.h) here: a name or description with an escape sequence in old state shows as "\x1b", inert.
#include <ctime>
#include <iostream>

#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {

void printError(const Error& error) {
  std::cerr << "corral: " << terminalSafe(error.message());
  if (!error.field().empty()) std::cerr << " (field: " << terminalSafe(error.field()) << ")";
  std::cerr << "\n";
}

int respond(const Invocation& invocation, const api::Request& request,
            const std::function<void(const json&)>& printHuman) {
  api::Client client(invocation.global.socketPath);
  Result<json> response = client.call(request);
  if (!response) {
    printError(response.error());
    return 1;
  }
  if (invocation.global.json) {
    if (!response->is_null()) std::cout << response->dump(2) << "\n";
  } else {
    printHuman(*response);
  }
  return 0;
}

std::string displayText(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "-";
    case json::value_t::string:
      return terminalSafe(value.get<std::string>());
    case json::value_t::boolean:
      return value.get<bool>() ? "yes" : "no";
    case json::value_t::array: {
      if (value.empty()) return "-";
      std::string joined;
      for (const json& item : value) joined += (joined.empty() ? "" : ", ") + displayText(item);
      return joined;
    }
    default:
      return value.dump();
  }
}

std::string displayTime(const json& unixSeconds) {
  if (!unixSeconds.is_number_integer()) return displayText(unixSeconds);
  std::time_t seconds = unixSeconds.get<std::time_t>();
  std::tm utc{};
  if (!gmtime_r(&seconds, &utc)) return unixSeconds.dump();
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

std::string displayPorts(const json& rule) {
  const json& from = field(rule, "from_port");
  const json& to = field(rule, "to_port");
  if (from.is_null() && to.is_null()) return "all";
  if (from == to) return displayText(from);
  return displayText(from) + "-" + displayText(to);
}

const json& field(const json& object, std::string_view key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

void printFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [label, value] : fields) width = std::max(width, label.size() + 1);
  for (const auto& [label, value] : fields)
    std::cout << fmt::format("{:<{}} {}\n", label + ":", width, terminalSafe(value));
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {
  for (std::string& header : headers_) {
    for (char& c : header) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
}

void Table::add(std::vector<std::string> row) {
  row.resize(headers_.size());
  for (std::string& cell : row) cell = terminalSafe(cell);
  rows_.push_back(std::move(row));
}

void Table::print() const {
  std::vector<size_t> widths;
  for (const std::string& header : headers_) widths.push_back(header.size());
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto printRow = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      // The last column is not padded, so lines carry no trailing blanks.
      line += i + 1 == cells.size() ? cells[i] : fmt::format("{:<{}}  ", cells[i], widths[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  printRow(headers_);
  for (const auto& row : rows_) printRow(row);
}

const json& listItems(const json& response, api::ObjectKind kind) {
  static const json kEmpty = json::array();
  if (response.is_array()) return response;
  const json& items = field(response, api::collectionName(kind));
  return items.is_array() ? items : kEmpty;
}

void printList(const Table& table, std::string_view hint) {
  table.print();
  if (table.empty()) std::cout << "(none yet: " << hint << ")\n";
}

}  // namespace corral::cli
