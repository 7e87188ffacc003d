// corrald's SQLite store: opening the database (its mode, pragmas and migration). Its tables are read and
// written in store_topology.cc, store_instances.cc and store_comparisons.cc; the SQLite helpers they share
// are in store_sqlite.h, the schema in store_schema.cc.
#include "daemon/store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/unique_fd.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;

namespace {

// A lock held by another connection (a sqlite3 shell looking at the state, say) is waited out for this
// long before a mutation fails with "database is locked".
constexpr int kBusyTimeoutMs = 5000;

// The state (instance specs with their env, the whole topology) is for root and corrald only: the database
// is created 0600 and an older, wider one is narrowed, with its -wal and -shm files (SQLite gives those the
// database's mode when it creates them). O_NOFOLLOW: a symlink planted in the state directory is refused.
Status restrictToOwner(const std::string& path) {
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    const bool database = file == path;
    UniqueFd fd(::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | (database ? O_CREAT : 0), 0600));
    if (!fd) {
      if (errno == ENOENT) continue;  // no log file; or no directory, which sqlite3_open_v2 reports
      return fail(systemError(errno, fmt::format("open(\"{}\", O_NOFOLLOW)", file)));
    }
    if (::fchmod(fd.get(), 0600) != 0)
      return fail(systemError(errno, fmt::format("fchmod(\"{}\", 0600)", file)));
  }
  return {};
}

}  // namespace

Result<Store> Store::open(const std::string& path) {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("open store \"{}\"", path)));
  };

  // NOMUTEX (multi-thread mode): the connection is never used by two threads at once, because Service
  // serves every request under its own mutex, and it has to anyway (the model and the database change
  // together). SQLite's per-connection mutex would add nothing but a second lock.
  if (Status owned = restrictToOwner(path); !owned) return wrap(owned.error());
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, CloseDb> db(raw);  // sqlite allocates a handle even when opening fails
  if (rc != SQLITE_OK) {
    int errnum = raw != nullptr ? sqlite3_system_errno(raw) : 0;
    std::string message = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    if (errnum != 0) message += fmt::format(" ({})", std::strerror(errnum));
    return wrap(Error(ErrorKind::Internal, fmt::format("sqlite3_open_v2: {}", message), {}, errnum));
  }
  if (sqlite3_busy_timeout(db.get(), kBusyTimeoutMs) != SQLITE_OK) {
    return wrap(internalError("sqlite3_busy_timeout: {}", sqlite3_errmsg(db.get())));
  }

  // Checked before anything below changes the file: a newer corral's database is left exactly as it is.
  auto version = readUserVersion(db.get());
  if (!version) return wrap(std::move(version.error()));
  if (*version > kSchemaVersion) {
    return wrap(conflict("written by a newer corral (schema {}, this corral knows {}); refusing to touch it",
                         *version, kSchemaVersion));
  }

  // WAL: a commit is one append to the log, readers never block the writer, and a crash mid-commit leaves
  // the last committed state. journal_mode answers with the mode it actually took (a filesystem without
  // shared memory support keeps "delete"), so the answer is checked.
  auto mode = queryText(db.get(), "PRAGMA journal_mode = WAL");
  if (!mode) return wrap(std::move(mode.error()));
  if (*mode != "wal")
    return wrap(internalError("PRAGMA journal_mode = WAL: the database stayed in \"{}\" mode", *mode));
  // FULL syncs the log on every commit: an answered request survives power loss, not only a SIGKILL.
  if (auto status = execute(db.get(), "PRAGMA synchronous = FULL"); !status)
    return wrap(std::move(status.error()));
  // Per connection and off by default; a build without foreign key support ignores the pragma silently,
  // so it is read back.
  if (auto status = execute(db.get(), "PRAGMA foreign_keys = ON"); !status)
    return wrap(std::move(status.error()));
  auto foreignKeys = queryText(db.get(), "PRAGMA foreign_keys");
  if (!foreignKeys) return wrap(std::move(foreignKeys.error()));
  if (*foreignKeys != "1")
    return wrap(internalError("PRAGMA foreign_keys = ON: this sqlite does not enforce them"));

  if (auto status = migrate(db.get()); !status) return wrap(std::move(status.error()));
  return Store(path, std::move(db));
}

// -1 when the version cannot be read: the header's plain int has no room for an Error, and no schema is
// negative, so the caller cannot mistake it for a real version.
int Store::schemaVersion() const {
  std::lock_guard lock(*mutex_);
  auto version = readUserVersion(db_.get());
  return version ? *version : -1;
}

}  // namespace corral::daemon
