#include "subprocess/internal/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "loop/posix.h"

extern char** environ;

namespace asyncio::subprocess_internal {
namespace {

using posix::throw_errno;
using posix::UniqueFd;

class FileActions {
 public:
  FileActions() {
    int rc = posix_spawn_file_actions_init(&fa_);
    if (rc != 0) throw_errno("posix_spawn_file_actions_init", rc);
  }
  ~FileActions() { posix_spawn_file_actions_destroy(&fa_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

class SpawnAttr {
 public:
  SpawnAttr() {
    int rc = posix_spawnattr_init(&attr_);
    if (rc != 0) throw_errno("posix_spawnattr_init", rc);
  }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr_); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

void check(int rc, const char* what) {
  if (rc != 0) throw_errno(what, rc);
}

// A copy of `fd` numbered 3 or more (so that the dup2 onto 0, 1, 2 never
// clobbers another source), close-on-exec; the original is closed.
int dup_above_stdio(int fd) {
  UniqueFd original(fd);
  if (fd > 2) return original.release();
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
  return copy;
}

// argv[0] as execvp would find it: through PATH unless it has a '/'. With
// `env` given, its PATH (else "/bin:/usr/bin") is searched, as Python does.
std::string find_program(const std::string& program, const SubprocessOptions& options) {
  if (program.empty()) throw_errno("empty program name", ENOENT);
  if (program.find('/') != std::string::npos) return program;
  std::string path = "/bin:/usr/bin";
  if (options.env) {
    auto it = options.env->find("PATH");
    if (it != options.env->end()) path = it->second;
  } else if (const char* p = std::getenv("PATH")) {
    path = p;
  }
  bool denied = false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + program;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0) {
      if (S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
      denied = true;
    }
    start = end + 1;
  }
  throw_errno(program, denied ? EACCES : ENOENT);
}

}  // namespace

int returncode_from(int code, int status) {
  if (code == CLD_EXITED) return status;
  return -status;  // CLD_KILLED, CLD_DUMPED
}

void check_no_nul(std::string_view value, std::string_view what) {
  if (value.find('\0') != std::string_view::npos) {
    throw std::invalid_argument("create_subprocess: embedded null byte in " + std::string(what));
  }
}

ExecArgs build_exec_args(const std::vector<std::string>& argv,
                         const std::optional<std::map<std::string, std::string>>& env) {
  ExecArgs result;
  result.argv.reserve(argv.size() + 1);
  for (size_t i = 0; i < argv.size(); ++i) {
    check_no_nul(argv[i], "argv[" + std::to_string(i) + "]");
    result.argv.push_back(const_cast<char*>(argv[i].c_str()));
  }
  result.argv.push_back(nullptr);
  if (!env) return result;
  result.env_entries.reserve(env->size());
  for (const auto& [name, value] : *env) {
    check_no_nul(name, "an environment variable name");
    check_no_nul(value, "the value of environment variable " + name);
    if (name.empty() || name.find('=') != std::string::npos) {
      throw std::invalid_argument("create_subprocess: illegal environment variable name '" + name +
                                  "'");
    }
    result.env_entries.push_back(name + "=" + value);
  }
  result.envp.reserve(result.env_entries.size() + 1);
  for (std::string& entry : result.env_entries) result.envp.push_back(entry.data());
  result.envp.push_back(nullptr);
  return result;
}

SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& options) {
  if (argv.empty()) throw std::invalid_argument("create_subprocess: empty argv");
  // Before anything is opened: refused input leaves nothing behind.
  ExecArgs exec_args = build_exec_args(argv, options.env);
  if (options.cwd) check_no_nul(*options.cwd, "cwd");
  const subprocess::Stdio stdio[3] = {options.stdin_, options.stdout_, options.stderr_};
  if (stdio[0] == subprocess::STDOUT || stdio[1] == subprocess::STDOUT) {
    throw std::invalid_argument("subprocess::STDOUT is only valid for stderr_");
  }
  const std::string program = find_program(argv[0], options);

  std::vector<int> pass_fds;
  for (int fd : options.pass_fds) {
    if (fd <= 2) continue;  // stdio is handled by stdin_/stdout_/stderr_
    if (::fcntl(fd, F_GETFD) < 0) throw_errno("pass_fds: " + std::to_string(fd));
    pass_fds.push_back(fd);
  }
  std::sort(pass_fds.begin(), pass_fds.end());
  pass_fds.erase(std::unique(pass_fds.begin(), pass_fds.end()), pass_fds.end());

  UniqueFd parent[3], child[3], devnull;
  for (int i = 0; i < 3; ++i) {
    if (stdio[i] == subprocess::PIPE) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        throw_errno("socketpair");
      }
      parent[i].reset(sv[0]);
      child[i].reset(dup_above_stdio(sv[1]));
      posix::set_nonblocking(sv[0]);
    } else if (stdio[i] == subprocess::DEVNULL && devnull.get() < 0) {
      int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (fd < 0) throw_errno("/dev/null");
      devnull.reset(dup_above_stdio(fd));
    }
  }

  FileActions actions;
  for (int i = 0; i < 3; ++i) {
    switch (stdio[i]) {
      case subprocess::PIPE:
        check(posix_spawn_file_actions_adddup2(actions.get(), child[i].get(), i), "adddup2");
        break;
      case subprocess::DEVNULL:
        check(posix_spawn_file_actions_adddup2(actions.get(), devnull.get(), i), "adddup2");
        break;
      case subprocess::STDOUT:
        check(posix_spawn_file_actions_adddup2(actions.get(), 1, 2), "adddup2");
        break;
      case subprocess::INHERIT:
        break;
    }
  }
  // dup2(fd, fd) clears FD_CLOEXEC (glibc >= 2.29): the passed descriptors
  // survive the exec.
  for (int fd : pass_fds) {
    check(posix_spawn_file_actions_adddup2(actions.get(), fd, fd), "adddup2");
  }
  // Nothing else survives, even a descriptor another part of the program
  // opened without O_CLOEXEC: close every fd from 3 up but the passed ones.
  // (A close of an fd that is not open is not an error for posix_spawn.)
  const int close_from = pass_fds.empty() ? 3 : pass_fds.back() + 1;
  for (int fd = 3, next = 0; fd < close_from; ++fd) {
    if (static_cast<size_t>(next) < pass_fds.size() && pass_fds[next] == fd) {
      ++next;
      continue;
    }
    check(posix_spawn_file_actions_addclose(actions.get(), fd), "addclose");
  }
  check(posix_spawn_file_actions_addclosefrom_np(actions.get(), close_from), "addclosefrom");
  if (options.cwd) {
    check(posix_spawn_file_actions_addchdir_np(actions.get(), options.cwd->c_str()), "addchdir");
  }

  // Default dispositions for every signal (SIGPIPE, which the library
  // ignores, included) and an empty mask, as Python's restore_signals.
  SpawnAttr attr;
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (options.start_new_session) flags |= POSIX_SPAWN_SETSID;
  check(posix_spawnattr_setflags(attr.get(), flags), "posix_spawnattr_setflags");
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  // glibc's sigfillset leaves out its internal signals (32 and 33), and its
  // posix_spawn then sets them to SIG_IGN in the child, which an exec keeps.
  // Ask for their default too: the set is a plain bit array on Linux. (The
  // child blocks every signal until the exec, so nothing can arrive there.)
  for (int sig = 32; sig < SIGRTMIN; ++sig) {
    auto* words = reinterpret_cast<unsigned long*>(&all);
    constexpr int kBits = 8 * sizeof(unsigned long);
    words[(sig - 1) / kBits] |= 1UL << ((sig - 1) % kBits);
  }
  sigemptyset(&none);
  check(posix_spawnattr_setsigdefault(attr.get(), &all), "posix_spawnattr_setsigdefault");
  check(posix_spawnattr_setsigmask(attr.get(), &none), "posix_spawnattr_setsigmask");

  char** env = exec_args.envp.empty() ? environ : exec_args.envp.data();
  pid_t pid = -1;
  int rc =
      posix_spawn(&pid, program.c_str(), actions.get(), attr.get(), exec_args.argv.data(), env);
  if (rc != 0) {
    std::string what = argv[0];
    if (options.cwd && (rc == ENOENT || rc == ENOTDIR || rc == EACCES)) {
      what += " (cwd " + *options.cwd + ")";
    }
    throw_errno(what, rc);
  }
  SpawnedChild result;
  result.pid = pid;
  result.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (result.pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw_errno("pidfd_open", err);
  }
  for (int i = 0; i < 3; ++i) result.pipes[i] = parent[i].release();
  return result;
}

}  // namespace asyncio::subprocess_internal
