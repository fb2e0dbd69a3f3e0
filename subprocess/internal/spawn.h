// Starting a child with posix_spawn: stdio, pass_fds, cwd, env, session.
#pragma once

#include <sys/types.h>

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "subprocess/subprocess.h"

namespace asyncio::subprocess_internal {

struct SpawnedChild {
  pid_t pid = -1;
  int pidfd = -1;  // O_CLOEXEC; owned by the caller
  // The parent's end of each PIPE stream (O_CLOEXEC | O_NONBLOCK), else -1.
  std::array<int, 3> pipes = {-1, -1, -1};
};

// The argv and envp arrays that posix_spawn takes, built from the caller's
// strings (pure: no system call). Throws std::invalid_argument, as Python's
// ValueError, for a NUL byte in an argument (the program included) or in an
// env name or value, and for an env name that is empty or contains '=':
// exec would silently cut or misread them.
struct ExecArgs {
  ExecArgs() = default;
  // envp points into env_entries, argv into the caller's strings.
  ExecArgs(const ExecArgs&) = delete;
  ExecArgs& operator=(const ExecArgs&) = delete;
  ExecArgs(ExecArgs&&) = default;

  std::vector<char*> argv;               // null-terminated
  std::vector<std::string> env_entries;  // "NAME=value"
  std::vector<char*> envp;               // null-terminated; empty: inherit ours
};
ExecArgs build_exec_args(const std::vector<std::string>& argv,
                         const std::optional<std::map<std::string, std::string>>& env);

// Throws std::invalid_argument if `value` holds a NUL byte; `what` names it.
void check_no_nul(std::string_view value, std::string_view what);

// Starts the child. Throws std::system_error with the errno of what failed
// (the exec or chdir in the child included: ENOENT, EACCES, ...), and
// std::invalid_argument for an empty argv, a misplaced STDOUT or what
// build_exec_args and check_no_nul refuse (the cwd too). Nothing is
// left open or unreaped on failure.
SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& options);

// waitid status -> returncode (-N for signal N).
int returncode_from(int code, int status);

}  // namespace asyncio::subprocess_internal
