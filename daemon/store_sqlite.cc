// The SQLite helpers of daemon/store_sqlite.h that are not templates or inline members.
#include "daemon/store_sqlite.h"

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace corral::daemon::sql {

std::string sqlSummary(std::string_view sql) {
  std::string collapsed;
  for (char c : sql) {
    bool space = c == ' ' || c == '\n' || c == '\t';
    if (space && (collapsed.empty() || collapsed.back() == ' ')) continue;
    collapsed.push_back(space ? ' ' : c);
  }
  while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
  constexpr size_t kShort = 40;
  if (collapsed.size() <= kShort) return collapsed;
  auto wordsFrom = [&](size_t start, size_t count) {
    size_t end = start;
    for (size_t word = 0; word < count && end != std::string::npos; ++word)
      end = collapsed.find(' ', end + 1);
    return collapsed.substr(start, end == std::string::npos ? std::string::npos : end - start);
  };
  if (collapsed.starts_with("SELECT ")) {
    size_t from = collapsed.find(" FROM ");
    if (from != std::string::npos) return "SELECT ..." + wordsFrom(from, 2) + " ...";
  }
  return wordsFrom(0, 3) + " ...";
}

Error sqliteError(sqlite3* db, std::string_view call, std::string_view sql) {
  return internalError("{}(\"{}\"): {}", call, sqlSummary(sql), sqlite3_errmsg(db));
}

Status execute(sqlite3* db, std::string_view sql) {
  std::string text(sql);  // sqlite3_exec wants a terminated string
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail(sqliteError(db, "sqlite3_exec", sql));
  }
  return {};
}

Result<std::string> queryText(sqlite3* db, std::string_view sql) {
  auto statement = Statement::prepare(db, sql);
  if (!statement) return fail(std::move(statement.error()));
  auto row = statement->step();
  if (!row) return fail(std::move(row.error()));
  if (!*row) return fail(internalError("sqlite3_step(\"{}\"): returned no row", sqlSummary(sql)));
  const unsigned char* text = sqlite3_column_text(statement->get(), 0);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text));
}

Result<int> readUserVersion(sqlite3* db) {
  auto statement = Statement::prepare(db, "PRAGMA user_version");
  if (!statement) return fail(std::move(statement.error()));
  auto row = statement->step();
  if (!row) return fail(std::move(row.error()));
  if (!*row) return fail(internalError("PRAGMA user_version returned no row"));
  return sqlite3_column_int(statement->get(), 0);
}

std::string keyColumn(sqlite3_stmt* statement, int index) {
  const unsigned char* text = sqlite3_column_text(statement, index);
  return text == nullptr ? std::string("NULL") : std::string(reinterpret_cast<const char*>(text));
}

}  // namespace corral::daemon::sql
