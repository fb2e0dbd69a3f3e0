#include "subprocess/subprocess.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "streams/streams.h"
#include "subprocess/internal/spawn.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

SubprocessOptions pipes(bool in, bool out, bool err) {
  SubprocessOptions o;
  if (in) o.stdin_ = subprocess::PIPE;
  if (out) o.stdout_ = subprocess::PIPE;
  if (err) o.stderr_ = subprocess::PIPE;
  return o;
}

// Children of this process in state Z.
std::vector<int> zombies() {
  std::vector<int> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  const int me = ::getpid();
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(stat.substr(rp + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (state == 'Z' && ppid == me) out.push_back(std::atoi(e->d_name));
  }
  ::closedir(d);
  return out;
}

// Waits (up to 3 s) until this process has no zombie child.
bool no_zombies() {
  for (int i = 0; i < 300; ++i) {
    if (zombies().empty()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// True while `pid` exists (running or zombie).
bool exists(int pid) { return ::kill(pid, 0) == 0; }

// Waits (up to 3 s) until `pid` is gone altogether (reaped).
bool gone(int pid) {
  for (int i = 0; i < 300; ++i) {
    if (!exists(pid)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

template <class F>
void run_test(F f) {
  asyncio::run(f());
}

// ---------------------------------------------------------------------------

TEST(Subprocess, EchoToStdout) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(false, true, false);
    Process p = co_await create_subprocess_exec("echo", "hello", "world", opts);
    EXPECT_GT(p.pid(), 0);
    EXPECT_FALSE(p.stdin_.has_value());
    EXPECT_TRUE(p.stdout_.has_value());
    EXPECT_FALSE(p.stderr_.has_value());
    std::string line = co_await p.stdout_->readline();
    EXPECT_EQ(line, "hello world\n");
    int rc = co_await p.wait();
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(p.returncode(), 0);
  });
}

TEST(Subprocess, VectorFormAndDefaultsInherit) {
  run_test([]() -> Coro<void> {
    std::vector<std::string> argv = {"true"};
    Process p = co_await create_subprocess_exec(std::move(argv));
    EXPECT_FALSE(p.stdin_ || p.stdout_ || p.stderr_);
    EXPECT_EQ(co_await p.wait(), 0);
  });
}

TEST(Subprocess, CommunicateOneMiBThroughCat) {
  run_test([]() -> Coro<void> {
    std::string data(1 << 20, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i * 7 % 26);
    SubprocessOptions opts = pipes(true, true, true);
    Process p = co_await create_subprocess_exec("cat", opts);
    std::optional<std::string> input = data;
    auto [out, err] = co_await p.communicate(std::move(input));
    EXPECT_EQ(out.size(), data.size());
    EXPECT_TRUE(out == data);
    EXPECT_EQ(err, "");
    EXPECT_EQ(p.returncode(), 0);
  });
}

TEST(Subprocess, CommunicateLargeBothWaysWithStderr) {
  // Writes 1 MiB to stdout and 1 MiB to stderr while being fed 1 MiB.
  run_test([]() -> Coro<void> {
    std::string data(1 << 20, 'x');
    SubprocessOptions opts = pipes(true, true, true);
    Process p = co_await create_subprocess_shell(
        "head -c 1048576 /dev/zero >&2; cat; head -c 1048576 /dev/zero >&2", opts);
    std::optional<std::string> input = data;
    auto [out, err] = co_await p.communicate(std::move(input));
    EXPECT_EQ(out.size(), data.size());
    EXPECT_EQ(err.size(), 2u << 20);
    EXPECT_EQ(p.returncode(), 0);
  });
}

TEST(Subprocess, CommunicateChildIgnoresInput) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(true, true, false);
    Process p = co_await create_subprocess_exec("true", opts);
    std::optional<std::string> input = std::string(4 << 20, 'y');
    auto [out, err] = co_await p.communicate(std::move(input));
    EXPECT_EQ(out, "");
    EXPECT_EQ(p.returncode(), 0);
  });
}

TEST(Subprocess, StdinWriterAndDrain) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(true, true, false);
    Process p = co_await create_subprocess_exec("cat", opts);
    for (int i = 0; i < 3; ++i) {
      p.stdin_->write("line " + std::to_string(i) + "\n");
      co_await p.stdin_->drain();
      std::string line = co_await p.stdout_->readline();
      EXPECT_EQ(line, "line " + std::to_string(i) + "\n");
    }
    p.stdin_->close();
    std::string rest = co_await p.stdout_->read();
    EXPECT_EQ(rest, "");
    EXPECT_EQ(co_await p.wait(), 0);
  });
}

TEST(Subprocess, ExitCodes) {
  run_test([]() -> Coro<void> {
    for (int code : {0, 1, 3, 255}) {
      Process p = co_await create_subprocess_shell("exit " + std::to_string(code));
      EXPECT_EQ(co_await p.wait(), code);
    }
  });
}

TEST(Subprocess, KillTerminateSendSignal) {
  run_test([]() -> Coro<void> {
    Process a = co_await create_subprocess_exec("sleep", "30");
    a.kill();
    EXPECT_EQ(co_await a.wait(), -SIGKILL);
    Process b = co_await create_subprocess_exec("sleep", "30");
    b.terminate();
    EXPECT_EQ(co_await b.wait(), -SIGTERM);
    Process c = co_await create_subprocess_exec("sleep", "30");
    c.send_signal(SIGUSR1);
    EXPECT_EQ(co_await c.wait(), -SIGUSR1);
    // After the exit, signals are no-ops (the pid may have been reused).
    c.kill();
    c.send_signal(SIGTERM);
    EXPECT_EQ(c.returncode(), -SIGUSR1);
  });
}

TEST(Subprocess, MissingProgramRaisesEnoent) {
  run_test([]() -> Coro<void> {
    for (const char* program : {"/nonexistent/program", "no-such-program-xyz-123"}) {
      int code = 0;
      try {
        Process p = co_await create_subprocess_exec(program, "arg");
        ADD_FAILURE() << "started " << program;
      } catch (const std::system_error& e) {
        code = e.code().value();
      }
      EXPECT_EQ(code, ENOENT) << program;
    }
  });
}

TEST(Subprocess, NonExecutableRaisesEacces) {
  char path[] = "/tmp/subprocess_test_XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "#!/bin/sh\nexit 0\n", 17), 17);
  ::close(fd);
  ::chmod(path, 0644);
  std::string file = path;
  asyncio::run([](std::string file) -> Coro<void> {
    int code = 0;
    try {
      Process p = co_await create_subprocess_exec(file);
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    EXPECT_EQ(code, EACCES);
    // Once executable, it runs.
    ::chmod(file.c_str(), 0755);
    Process p = co_await create_subprocess_exec(file);
    EXPECT_EQ(co_await p.wait(), 0);
  }(file));
  ::unlink(path);
}

size_t open_fd_count() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

// What create_subprocess_exec threw, if it was std::invalid_argument.
Coro<std::string> refusal(std::vector<std::string> argv, SubprocessOptions options) {
  try {
    Process p = co_await create_subprocess_exec(std::move(argv), std::move(options));
    co_await p.wait();
  } catch (const std::invalid_argument& e) {
    co_return e.what();
  } catch (const std::exception& e) {
    co_return std::string("not std::invalid_argument: ") + e.what();
  }
  co_return "started";
}

TEST(Subprocess, NulBytesAndBadEnvNamesAreRefusedBeforeSpawning) {
  run_test([]() -> Coro<void> {
    using namespace std::string_literals;
    using Env = std::map<std::string, std::string>;
    struct Case {
      std::vector<std::string> argv;
      std::optional<Env> env;
      std::optional<std::string> cwd;
      std::string error;
    };
    const Case cases[] = {
        {{"echo", "before\0after"s}, {}, {}, "embedded null byte"},
        {{"/bin/echo\0ignored"s, "x"}, {}, {}, "embedded null byte"},
        {{"echo\0ignored"s}, {}, {}, "embedded null byte"},
        {{"env"}, Env{{"A=B", "1"}}, {}, "illegal environment variable name"},
        {{"env"}, Env{{"=A", "1"}}, {}, "illegal environment variable name"},
        {{"env"}, Env{{"", "1"}}, {}, "illegal environment variable name"},
        {{"env"}, Env{{"A\0B"s, "1"}}, {}, "embedded null byte"},
        {{"env"}, Env{{"A", "1\0B=2"s}}, {}, "embedded null byte"},
        {{"pwd"}, {}, "/tmp\0/nonexistent"s, "embedded null byte"},
    };
    const size_t fds_before = open_fd_count();
    for (const Case& c : cases) {
      SubprocessOptions options = pipes(true, true, true);
      options.env = c.env;
      options.cwd = c.cwd;
      std::string error = co_await refusal(c.argv, options);
      EXPECT_NE(error.find(c.error), std::string::npos) << c.argv[0] << ": " << error;
    }
    EXPECT_EQ(open_fd_count(), fds_before);
    EXPECT_TRUE(zombies().empty());
  });
}

TEST(Subprocess, BuildExecArgs) {
  using namespace std::string_literals;
  const std::vector<std::string> argv = {"prog", "", "a b"};
  subprocess_internal::ExecArgs inherit = subprocess_internal::build_exec_args(argv, std::nullopt);
  ASSERT_EQ(inherit.argv.size(), 4u);
  EXPECT_STREQ(inherit.argv[0], "prog");
  EXPECT_STREQ(inherit.argv[1], "");
  EXPECT_STREQ(inherit.argv[2], "a b");
  EXPECT_EQ(inherit.argv[3], nullptr);
  EXPECT_TRUE(inherit.envp.empty()) << "no env: the parent's is inherited";

  const std::optional<std::map<std::string, std::string>> env =
      std::map<std::string, std::string>{{"A", "x=y"}, {"B", ""}};
  subprocess_internal::ExecArgs moved = subprocess_internal::build_exec_args(argv, env);
  subprocess_internal::ExecArgs with_env = std::move(moved);  // the pointers stay valid
  ASSERT_EQ(with_env.envp.size(), 3u);
  EXPECT_STREQ(with_env.envp[0], "A=x=y");
  EXPECT_STREQ(with_env.envp[1], "B=");
  EXPECT_EQ(with_env.envp[2], nullptr);
  const std::optional<std::map<std::string, std::string>> empty_env =
      std::map<std::string, std::string>{};
  subprocess_internal::ExecArgs no_vars = subprocess_internal::build_exec_args(argv, empty_env);
  ASSERT_EQ(no_vars.envp.size(), 1u) << "an empty environment, not the parent's";

  EXPECT_THROW(subprocess_internal::build_exec_args({"a\0b"s}, std::nullopt),
               std::invalid_argument);
  EXPECT_THROW(
      subprocess_internal::build_exec_args(argv, std::map<std::string, std::string>{{"=", ""}}),
      std::invalid_argument);
}

TEST(Subprocess, ShellWithStderrIntoStdout) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts;
    opts.stdout_ = subprocess::PIPE;
    opts.stderr_ = subprocess::STDOUT;
    Process p = co_await create_subprocess_shell("echo out; echo err >&2; exit 7", opts);
    EXPECT_FALSE(p.stderr_.has_value());
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "out\nerr\n");
    EXPECT_EQ(err, "");
    EXPECT_EQ(p.returncode(), 7);
  });
}

TEST(Subprocess, SeparateStderr) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(false, true, true);
    Process p = co_await create_subprocess_shell("echo out; echo err >&2", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "out\n");
    EXPECT_EQ(err, "err\n");
  });
}

TEST(Subprocess, StdoutOnlyValidForStderr) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts;
    opts.stdout_ = subprocess::STDOUT;
    bool thrown = false;
    try {
      Process p = co_await create_subprocess_exec("true", opts);
    } catch (const std::invalid_argument&) {
      thrown = true;
    }
    EXPECT_TRUE(thrown);
  });
}

TEST(Subprocess, Devnull) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts;
    opts.stdin_ = subprocess::DEVNULL;
    opts.stdout_ = subprocess::PIPE;
    opts.stderr_ = subprocess::DEVNULL;
    Process p = co_await create_subprocess_shell("cat; echo gone >&2; echo done", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "done\n");
    SubprocessOptions quiet;
    quiet.stdout_ = subprocess::DEVNULL;
    Process q = co_await create_subprocess_exec("echo", "not shown", quiet);
    EXPECT_FALSE(q.stdout_.has_value());
    EXPECT_EQ(co_await q.wait(), 0);
  });
}

TEST(Subprocess, Cwd) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(false, true, false);
    opts.cwd = "/tmp";
    Process p = co_await create_subprocess_exec("pwd", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "/tmp\n");
    // A relative program path is found from the new directory.
    opts.cwd = "/bin";
    Process q = co_await create_subprocess_exec("./sh", "-c", "echo ok", opts);
    auto [out2, err2] = co_await q.communicate();
    EXPECT_EQ(out2, "ok\n");
    opts.cwd = "/nonexistent-dir";
    int code = 0;
    try {
      Process r = co_await create_subprocess_exec("pwd", opts);
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    EXPECT_EQ(code, ENOENT);
  });
}

TEST(Subprocess, EnvReplacesEnvironment) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(false, true, false);
    opts.env = std::map<std::string, std::string>{{"FOO", "bar"}, {"X", "1 2"}};
    // No PATH in env: "env" is found in /bin:/usr/bin, as Python does.
    Process p = co_await create_subprocess_exec("env", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "FOO=bar\nX=1 2\n");
    opts.env = std::map<std::string, std::string>{};
    Process q = co_await create_subprocess_exec("/usr/bin/env", opts);
    auto [out2, err2] = co_await q.communicate();
    EXPECT_EQ(out2, "");
    // Without env, the parent's environment is inherited.
    ::setenv("SUBPROCESS_TEST_VAR", "inherited", 1);
    SubprocessOptions inherit = pipes(false, true, false);
    Process r = co_await create_subprocess_shell("echo $SUBPROCESS_TEST_VAR", inherit);
    auto [out3, err3] = co_await r.communicate();
    EXPECT_EQ(out3, "inherited\n");
  });
}

TEST(Subprocess, Limit) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(false, true, false);
    opts.limit = 16;
    Process p =
        co_await create_subprocess_shell("echo 0123456789012345678901234567890; echo ok", opts);
    EXPECT_EQ(p.stdout_->limit(), 16u);
    bool overrun = false;
    try {
      (void)co_await p.stdout_->readline();
    } catch (const LimitOverrunError&) {
      overrun = true;
    }
    EXPECT_TRUE(overrun);
    EXPECT_EQ(co_await p.stdout_->readline(), "ok\n");
    EXPECT_EQ(co_await p.wait(), 0);
  });
}

TEST(Subprocess, FiftyConcurrentChildren) {
  run_test([]() -> Coro<void> {
    std::vector<Task<std::string>> tasks;
    for (int i = 0; i < 50; ++i) {
      tasks.push_back(create_task([](int i) -> Coro<std::string> {
        SubprocessOptions opts = pipes(true, true, false);
        Process p = co_await create_subprocess_exec("cat", opts);
        std::optional<std::string> input = "child " + std::to_string(i);
        auto [out, err] = co_await p.communicate(std::move(input));
        co_return out;
      }(i)));
    }
    for (int i = 0; i < 50; ++i) {
      std::string out = co_await tasks[i];
      EXPECT_EQ(out, "child " + std::to_string(i));
    }
  });
}

TEST(Subprocess, ChildSeesOnlyStdioAndPassFds) {
  // A descriptor leaked without O_CLOEXEC (fd 100) must not reach the child;
  // a passed one (fd 50, close-on-exec in the parent) must.
  int base = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(base, 0);
  ASSERT_EQ(::dup2(base, 100), 100);  // no O_CLOEXEC
  ASSERT_EQ(::dup3(base, 50, O_CLOEXEC), 50);
  ::close(base);
  asyncio::run([]() -> Coro<void> {
    SubprocessOptions opts = pipes(true, true, true);
    opts.pass_fds = {50};
    Process p = co_await create_subprocess_exec("ls", "/proc/self/fd", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(err, "");
    std::set<int> fds;
    std::istringstream in(out);
    for (std::string s; in >> s;) fds.insert(std::atoi(s.c_str()));
    EXPECT_TRUE(fds.count(0) && fds.count(1) && fds.count(2));
    EXPECT_TRUE(fds.count(50)) << out;
    EXPECT_FALSE(fds.count(100)) << out;
    // 0, 1, 2, 50 and the directory ls itself opened.
    EXPECT_LE(fds.size(), 5u) << out;

    // Without pass_fds: only stdio (+ ls's own).
    SubprocessOptions plain = pipes(false, true, false);
    Process q = co_await create_subprocess_exec("ls", "/proc/self/fd", plain);
    auto [out2, err2] = co_await q.communicate();
    std::set<int> fds2;
    std::istringstream in2(out2);
    for (std::string s; in2 >> s;) fds2.insert(std::atoi(s.c_str()));
    EXPECT_LE(fds2.size(), 4u) << out2;
    EXPECT_FALSE(fds2.count(50) || fds2.count(100)) << out2;
  }());
  ::close(50);
  ::close(100);
}

TEST(Subprocess, PassFdIsUsable) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  int wfd = fds[1];
  asyncio::run([](int wfd) -> Coro<void> {
    SubprocessOptions opts;
    opts.pass_fds = {wfd};
    Process p = co_await create_subprocess_shell("echo via-fd >&" + std::to_string(wfd), opts);
    EXPECT_EQ(co_await p.wait(), 0);
  }(wfd));
  ::close(wfd);
  char buf[64] = {};
  ssize_t n = ::read(fds[0], buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "via-fd\n");
  ::close(fds[0]);
}

TEST(Subprocess, StartNewSession) {
  run_test([]() -> Coro<void> {
    for (bool new_session : {false, true}) {
      SubprocessOptions opts = pipes(false, true, false);
      opts.start_new_session = new_session;
      Process p = co_await create_subprocess_exec("cat", "/proc/self/stat", opts);
      auto [out, err] = co_await p.communicate();
      std::istringstream rest(out.substr(out.rfind(')') + 2));
      char state;
      int ppid, pgrp, session;
      rest >> state >> ppid >> pgrp >> session;
      EXPECT_EQ(ppid, ::getpid());
      if (new_session) {
        EXPECT_EQ(session, p.pid());
      } else {
        EXPECT_EQ(session, ::getsid(0));
      }
    }
  });
}

TEST(Subprocess, DefaultSignalDispositionsAndEmptyMask) {
  // This thread blocks SIGUSR2; the loop ignores SIGPIPE. The child gets
  // neither.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  ::signal(SIGPIPE, SIG_IGN);
  asyncio::run([]() -> Coro<void> {
    SubprocessOptions opts = pipes(false, true, false);
    Process p =
        co_await create_subprocess_exec("grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  }());
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(Subprocess, WaitAwaitedByTwoTasks) {
  run_test([]() -> Coro<void> {
    Process p = co_await create_subprocess_shell("sleep 0.1; exit 5");
    auto a = create_task(p.wait());
    auto b = create_task(p.wait());
    auto both = gather(a, b);
    auto [ra, rb] = co_await both;
    EXPECT_EQ(ra, 5);
    EXPECT_EQ(rb, 5);
    EXPECT_EQ(co_await p.wait(), 5);
  });
}

TEST(Subprocess, CancelledWaitLeavesChildAlive) {
  run_test([]() -> Coro<void> {
    Process p = co_await create_subprocess_exec("sleep", "30");
    auto t = create_task(p.wait());
    co_await sleep(20ms);
    t.cancel();
    bool cancelled = false;
    try {
      co_await t;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    co_await sleep(20ms);
    EXPECT_FALSE(p.returncode().has_value());
    EXPECT_TRUE(exists(p.pid()));
    p.kill();
    EXPECT_EQ(co_await p.wait(), -SIGKILL);
  });
}

TEST(Subprocess, CancelledCommunicateLeavesChildAlive) {
  run_test([]() -> Coro<void> {
    SubprocessOptions opts = pipes(true, true, true);
    Process p = co_await create_subprocess_exec("sleep", "30", opts);
    auto t = create_task(p.communicate());
    co_await sleep(20ms);
    t.cancel();
    bool cancelled = false;
    try {
      (void)co_await t;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    co_await sleep(20ms);
    EXPECT_FALSE(p.returncode().has_value());
    EXPECT_TRUE(exists(p.pid()));
    p.kill();
    EXPECT_EQ(co_await p.wait(), -SIGKILL);
  });
}

TEST(Subprocess, WaitForTimeout) {
  run_test([]() -> Coro<void> {
    Process p = co_await create_subprocess_exec("sleep", "30");
    bool timed_out = false;
    try {
      (void)co_await wait_for(p.wait(), 50ms);
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(exists(p.pid()));
    p.terminate();
    EXPECT_EQ(co_await p.wait(), -SIGTERM);
  });
}

TEST(Subprocess, DroppedProcessLeavesNoZombie) {
  int running_pid = 0, exited_pid = 0;
  asyncio::run([](int& running_pid, int& exited_pid) -> Coro<void> {
    {
      SubprocessOptions opts = pipes(true, true, true);
      Process p = co_await create_subprocess_exec("sleep", "30", opts);
      running_pid = p.pid();
    }  // dropped while running: killed and reaped
    {
      Process q = co_await create_subprocess_exec("true");
      exited_pid = q.pid();
    }
    co_await sleep(100ms);
  }(running_pid, exited_pid));
  EXPECT_TRUE(gone(running_pid));
  EXPECT_TRUE(gone(exited_pid));
  EXPECT_TRUE(no_zombies());
}

TEST(Subprocess, ProcessDroppedAtLoopClose) {
  int pid = 0;
  asyncio::run([](int& pid) -> Coro<void> {
    Process p = co_await create_subprocess_exec("sleep", "30");
    pid = p.pid();
    // Dropped when the coroutine ends, just before the loop closes.
  }(pid));
  EXPECT_TRUE(gone(pid));
  EXPECT_TRUE(no_zombies());
}

// ---------------------------------------------------------------------------
// The low-level interface

struct Recorder : SubprocessProtocol {
  std::vector<std::string> events;
  std::string out, err;
  std::shared_ptr<BaseTransport> transport;
  Future<void> lost = create_future<void>(get_running_loop());
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = t;  // a cycle, broken when connection_lost is delivered
    events.push_back("made");
  }
  void pipe_data_received(int fd, std::string_view data) override {
    EXPECT_FALSE(events.empty());
    (fd == 1 ? out : err).append(data);
  }
  void pipe_connection_lost(int fd, std::exception_ptr) override {
    events.push_back("pipe_lost " + std::to_string(fd));
  }
  void process_exited() override { events.push_back("exited"); }
  void connection_lost(std::exception_ptr) override {
    events.push_back("lost");
    transport.reset();
    lost.set_result();
  }
};

TEST(Subprocess, SubprocessExecWithProtocol) {
  run_test([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto factory = [] { return std::make_shared<Recorder>(); };
    std::vector<std::string> argv = {"sh", "-c", "cat; echo err >&2; exit 4"};
    auto spawning = subprocess_exec(loop, factory, std::move(argv));
    auto [transport, protocol] = co_await std::move(spawning);
    EXPECT_GT(transport->get_pid(), 0);
    EXPECT_FALSE(transport->get_returncode().has_value());
    for (int fd = 0; fd < 3; ++fd) EXPECT_NE(transport->get_pipe_transport(fd), nullptr);
    EXPECT_EQ(transport->get_pipe_transport(3), nullptr);
    EXPECT_EQ(protocol->transport, transport);
    auto* stdin_pipe = dynamic_cast<Transport*>(transport->get_pipe_transport(0));
    EXPECT_NE(stdin_pipe, nullptr);
    stdin_pipe->write("to stdout\n");
    stdin_pipe->write_eof();
    co_await protocol->lost;
    EXPECT_EQ(transport->get_returncode(), 4);
    EXPECT_EQ(protocol->out, "to stdout\n");
    EXPECT_EQ(protocol->err, "err\n");
    EXPECT_EQ(protocol->events.size(), 6u);
    if (protocol->events.size() == 6u) {
      EXPECT_EQ(protocol->events.front(), "made");
      EXPECT_EQ(protocol->events.back(), "lost");
      std::multiset<std::string> middle(protocol->events.begin() + 1, protocol->events.end() - 1);
      std::multiset<std::string> expected = {"pipe_lost 0", "pipe_lost 1", "pipe_lost 2", "exited"};
      EXPECT_EQ(middle, expected);
    }
    transport->close();
  });
}

TEST(Subprocess, SubprocessShellWithOptions) {
  run_test([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto factory = [] { return std::make_shared<Recorder>(); };
    SubprocessOptions opts;
    opts.stdout_ = subprocess::PIPE;
    auto spawning = subprocess_shell(loop, factory, "echo $((6 * 7))", opts);
    auto [transport, protocol] = co_await std::move(spawning);
    EXPECT_EQ(transport->get_pipe_transport(0), nullptr);
    EXPECT_NE(transport->get_pipe_transport(1), nullptr);
    EXPECT_EQ(transport->get_pipe_transport(2), nullptr);
    co_await protocol->lost;
    EXPECT_EQ(protocol->out, "42\n");
    EXPECT_EQ(transport->get_returncode(), 0);
    // Signals after the exit do nothing.
    transport->kill();
    transport->close();
    EXPECT_TRUE(transport->is_closing());
  });
}

TEST(Subprocess, TransportKillAndClose) {
  run_test([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto factory = [] { return std::make_shared<Recorder>(); };
    std::vector<std::string> argv = {"sleep", "30"};
    auto spawning = subprocess_exec(loop, factory, std::move(argv));
    auto [transport, protocol] = co_await std::move(spawning);
    transport->close();  // closes the pipes and kills the child
    co_await protocol->lost;
    EXPECT_EQ(transport->get_returncode(), -SIGKILL);
  });
}

TEST(Subprocess, TransportOutlivesLoop) {
  // The loop closes while the child runs: the child is handed to a reaper
  // and the transport, kept past the loop, is inert.
  std::shared_ptr<SubprocessTransport> kept;
  std::vector<std::string> reports;
  int line = 0;
  asyncio::run([](std::shared_ptr<SubprocessTransport>& kept, std::vector<std::string>& reports,
                  int& line) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    loop.set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    auto factory = [] { return std::make_shared<Recorder>(); };
    std::vector<std::string> argv = {"sleep", "0.3"};
    SubprocessOptions opts;
    auto spawning = subprocess_exec(loop, factory, std::move(argv), opts);
    line = __LINE__ - 1;
    auto [transport, protocol] = co_await std::move(spawning);
    kept = transport;
  }(kept, reports, line));
  int pid = kept->get_pid();
  // Open when its loop closed: reported once, as Python's ResourceWarning
  // (its pipes are the transport's, not reported on their own).
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "unclosed transport <SubprocessTransport pid=" + std::to_string(pid) +
                            " running> opened at " + __FILE__ + ":" + std::to_string(line));
  kept->kill();  // no effect: detached
  kept->close();
  kept.reset();
  EXPECT_TRUE(gone(pid));
  EXPECT_TRUE(no_zombies());
}

TEST(Subprocess, SeveralLoopsInSeveralThreads) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&ok, t] {
      asyncio::run([](std::atomic<int>& ok, int t) -> Coro<void> {
        for (int i = 0; i < 5; ++i) {
          SubprocessOptions opts = pipes(false, true, false);
          std::string word = std::to_string(t) + "-" + std::to_string(i);
          Process p = co_await create_subprocess_exec("echo", word, opts);
          auto [out, err] = co_await p.communicate();
          if (out == word + "\n" && p.returncode() == 0) ok.fetch_add(1);
        }
      }(ok, t));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 20);
}

TEST(Subprocess, ZzzNoZombiesAfterSuite) { EXPECT_TRUE(no_zombies()) << zombies().size(); }

}  // namespace
}  // namespace asyncio
