// Starting a child with posix_spawn: stdio, pass_fds, cwd, env, session.
#pragma once

#include <sys/types.h>

#include <array>
#include <string>
#include <vector>

#include "subprocess/subprocess.h"

namespace asyncio::subprocess_internal {

struct SpawnedChild {
  pid_t pid = -1;
  int pidfd = -1;  // O_CLOEXEC; owned by the caller
  // The parent's end of each PIPE stream (O_CLOEXEC | O_NONBLOCK), else -1.
  std::array<int, 3> pipes = {-1, -1, -1};
};

// Starts the child. Throws std::system_error with the errno of what failed
// (the exec or chdir in the child included: ENOENT, EACCES, ...), and
// std::invalid_argument for an empty argv or a misplaced STDOUT. Nothing is
// left open or unreaped on failure.
SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& options);

// waitid status -> returncode (-N for signal N).
int returncode_from(int code, int status);

}  // namespace asyncio::subprocess_internal
