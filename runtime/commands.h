// corral-runtime's commands (runc's command line), each a function of its parsed flags. The caller is the
// container's parent (conmon, containerd's shim, a test), as with runc: no daemon is involved.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral::runtime {

struct GlobalOptions {
  std::filesystem::path root = "/run/corral-runtime";
  bool debug = false;
};

struct CreateOptions {
  std::string id;
  std::filesystem::path bundle;  // empty: the working directory
  std::string pidFile;
  std::string consoleSocket;
  int preserveFds = 0;
  bool detach = false;  // run only
};

struct ExecCommandOptions {
  std::string id;
  std::string processFile;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::optional<std::string> cwd;
  std::optional<std::string> user;        // "UID[:GID]"
  std::vector<std::string> capabilities;  // --cap: added to every set
  bool tty = false;
  bool detach = false;
  bool noNewPrivileges = false;
  std::string pidFile;
  std::string consoleSocket;
  int preserveFds = 0;
};

// Each returns the process's exit status (0 on success; run and exec: the container process's), or an
// error the caller logs and turns into status 1.
Result<int> createCommand(const GlobalOptions& global, const CreateOptions& options);
Result<int> startCommand(const GlobalOptions& global, const std::string& id);
Result<int> runCommand(const GlobalOptions& global, const CreateOptions& options);
Result<int> stateCommand(const GlobalOptions& global, const std::string& id);
Result<int> killCommand(const GlobalOptions& global, const std::string& id, const std::string& signal,
                        bool all);
Result<int> deleteCommand(const GlobalOptions& global, const std::string& id, bool force);
Result<int> execCommand(const GlobalOptions& global, const ExecCommandOptions& options);
Result<int> psCommand(const GlobalOptions& global, const std::string& id, const std::string& format,
                      const std::vector<std::string>& psArgs);
Result<int> listCommand(const GlobalOptions& global, const std::string& format, bool quiet);
Result<int> pauseCommand(const GlobalOptions& global, const std::string& id, bool pause);
Result<int> featuresCommand();
Result<int> specCommand(const std::filesystem::path& bundle);

// "KILL", "SIGKILL", "9" → 9; errors name "signal".
Result<int> parseSignal(const std::string& text);

}  // namespace corral::runtime
