// corrald's durable state: one SQLite database (WAL, versioned schema). Every mutation is written in one
// transaction, so a SIGKILL at any moment leaves exactly the committed state.
#pragma once

#include <memory>
#include <string>

#include <sqlite3.h>

#include "core/error.h"
#include "net/vpc.h"

namespace corral::daemon {

inline constexpr int kSchemaVersion = 1;

class Store {
 public:
  // Opens (creating if needed) the database at `path` and migrates it to kSchemaVersion. A database
  // written by a newer corral (higher user_version) is refused rather than damaged.
  static Result<Store> open(const std::string& path);

  // Reads the whole network model; checks its integrity.
  Result<net::Topology> loadTopology() const;

  // Writes the objects `changes` names, as they are in `after`, and removes the deleted ones, in one
  // transaction: all or nothing.
  Status apply(const net::Topology& after, const net::Changeset& changes);

  int schemaVersion() const;
  const std::string& path() const { return path_; }

 private:
  struct CloseDb {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  Store(std::string path, std::unique_ptr<sqlite3, CloseDb> db) : path_(std::move(path)), db_(std::move(db)) {}
  std::string path_;
  std::unique_ptr<sqlite3, CloseDb> db_;
};

}  // namespace corral::daemon
