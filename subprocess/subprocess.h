// //subprocess: child processes, as asyncio's subprocess module.
//
//   SubprocessOptions opts;
//   opts.stdout_ = subprocess::PIPE;
//   Process p = co_await asyncio::create_subprocess_exec("ls", "-l", opts);
//   auto [out, err] = co_await p.communicate();
//
// Children are started with posix_spawn (no fork of a threaded process), with
// default signal dispositions and an empty signal mask, and with no file
// descriptor beyond stdin/stdout/stderr and `pass_fds`. A program that cannot
// be run throws std::system_error with the child's errno (ENOENT, EACCES, ...)
// from the call that starts it.
//
// Each child is watched through a pidfd registered with its loop (waitid on
// that pidfd only): several loops in several threads may run children, and
// SIGCHLD is never touched. No zombie is left behind: a child still running
// when its loop closes is reaped by a background thread.
//
// PIPE streams are AF_UNIX stream socketpairs (as CPython uses for stdin on
// some platforms), so the parent ends are ordinary socket transports with
// flow control. A child cannot open /dev/stdin or /dev/stdout by path when
// they are sockets (ENXIO); redirections such as `>&2` work.
#pragma once

#include <sys/types.h>

#include <any>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "streams/streams.h"
#include "transports/transports.h"

namespace asyncio {

namespace subprocess {
// What a child's stdin, stdout or stderr is connected to. STDOUT (stderr
// only): the same as the child's stdout.
enum Stdio { INHERIT, PIPE, DEVNULL, STDOUT };
}  // namespace subprocess

struct SubprocessOptions {
  subprocess::Stdio stdin_ = subprocess::INHERIT;
  subprocess::Stdio stdout_ = subprocess::INHERIT;
  subprocess::Stdio stderr_ = subprocess::INHERIT;
  // The child's working directory (a relative program path is found from it).
  std::optional<std::string> cwd;
  // Replaces the whole environment; PATH is then searched as in env's PATH.
  // A name that is empty or holds '=', or a NUL byte in a name or value (or
  // in argv or cwd), is refused with std::invalid_argument before spawning.
  std::optional<std::map<std::string, std::string>> env;
  // The StreamReader limit of stdout_ and stderr_.
  size_t limit = kDefaultStreamLimit;
  // Descriptors (> 2) the child inherits, at the same numbers.
  std::vector<int> pass_fds;
  // setsid() in the child.
  bool start_new_session = false;
};

// ---------------------------------------------------------------------------
// The low-level interface (loop.subprocess_exec)

class SubprocessProtocol : public BaseProtocol {
 public:
  // `fd` is 1 or 2; `data` is valid during the call only.
  virtual void pipe_data_received(int fd, std::string_view data) {
    (void)fd;
    (void)data;
  }
  // The pipe for `fd` (0, 1 or 2) was closed; `exc` is null on EOF.
  virtual void pipe_connection_lost(int fd, std::exception_ptr exc) {
    (void)fd;
    (void)exc;
  }
  virtual void process_exited() {}
};

class SubprocessTransport : public BaseTransport {
 public:
  virtual int get_pid() const = 0;
  // -N when killed by signal N; nullopt while the child runs.
  virtual std::optional<int> get_returncode() const = 0;
  // The transport of the parent's end of fd 0, 1 or 2; nullptr when that
  // stream is not PIPE (or is closed).
  virtual BaseTransport* get_pipe_transport(int fd) const = 0;
  // No effect once the child has exited.
  virtual void send_signal(int sig) = 0;
  virtual void terminate() = 0;  // SIGTERM
  virtual void kill() = 0;       // SIGKILL
  // close() closes the pipes and kills the child if it is still running (as
  // asyncio); connection_lost follows once the child is reaped.
};

namespace subprocess_internal {
// Starts argv[0] (searched in PATH unless it has a '/') and connects its
// pipes to `protocol`; connection_made has been called when this returns.
// `where`: the opening call's site, reported if the transport goes unclosed
// (see report_unclosed in transports/transports.h).
Coro<std::shared_ptr<SubprocessTransport>> spawn(EventLoop& loop,
                                                 std::shared_ptr<SubprocessProtocol> protocol,
                                                 std::vector<std::string> argv,
                                                 SubprocessOptions options,
                                                 std::source_location where);
SubprocessOptions all_pipes();
std::vector<std::string> shell_argv(std::string cmd);

template <class T, class P>
Coro<std::pair<std::shared_ptr<SubprocessTransport>, std::shared_ptr<P>>> with_protocol(
    Coro<std::shared_ptr<T>> spawning, std::shared_ptr<P> protocol) {
  std::shared_ptr<SubprocessTransport> transport = co_await std::move(spawning);
  co_return std::make_pair(std::move(transport), std::move(protocol));
}

template <class F>
auto make_protocol(F& factory) {
  auto protocol = factory();
  using P = typename decltype(protocol)::element_type;
  static_assert(std::is_base_of_v<SubprocessProtocol, P>,
                "the factory must return a std::shared_ptr to a SubprocessProtocol");
  if (!protocol) throw std::invalid_argument("protocol factory returned null");
  return protocol;
}
}  // namespace subprocess_internal

// loop.subprocess_exec: `factory` returns std::shared_ptr<P>, P a
// SubprocessProtocol. Without options, stdin, stdout and stderr are all PIPE
// (as Python's defaults); with options, they are as given.
//
// A transport dropped while its child runs or its pipes are open, without
// close(), is closed (the child killed) and reported as
// "unclosed transport <SubprocessTransport pid=N running> opened at
// file:line" (Python's ResourceWarning; see report_unclosed in
// transports/transports.h); so is one still open when its loop closes. Each
// function here takes that site as a defaulted last argument.
template <class F>
auto subprocess_exec(EventLoop& loop, F factory, std::vector<std::string> argv,
                     SubprocessOptions options,
                     std::source_location where = std::source_location::current()) {
  auto protocol = subprocess_internal::make_protocol(factory);
  return subprocess_internal::with_protocol(
      subprocess_internal::spawn(loop, protocol, std::move(argv), std::move(options), where),
      protocol);
}
template <class F>
auto subprocess_exec(EventLoop& loop, F factory, std::vector<std::string> argv,
                     std::source_location where = std::source_location::current()) {
  return subprocess_exec(loop, std::move(factory), std::move(argv),
                         subprocess_internal::all_pipes(), where);
}

// loop.subprocess_shell: `cmd` runs with /bin/sh -c.
template <class F>
auto subprocess_shell(EventLoop& loop, F factory, std::string cmd, SubprocessOptions options,
                      std::source_location where = std::source_location::current()) {
  return subprocess_exec(loop, std::move(factory), subprocess_internal::shell_argv(std::move(cmd)),
                         std::move(options), where);
}
template <class F>
auto subprocess_shell(EventLoop& loop, F factory, std::string cmd,
                      std::source_location where = std::source_location::current()) {
  return subprocess_exec(loop, std::move(factory), subprocess_internal::shell_argv(std::move(cmd)),
                         subprocess_internal::all_pipes(), where);
}

// ---------------------------------------------------------------------------
// The high-level interface (asyncio.create_subprocess_*)

namespace subprocess_internal {
class StreamProtocol;
}

// A running (or finished) child: asyncio.subprocess.Process. Move-only.
// Destroying it while the child still runs closes its pipes and kills it, as
// the garbage collection of a Process does in Python; it is reaped anyway.
class Process {
 public:
  Process(std::shared_ptr<SubprocessTransport> transport,
          std::shared_ptr<subprocess_internal::StreamProtocol> protocol);
  Process(Process&&) noexcept = default;
  Process& operator=(Process&& other) noexcept;
  ~Process();

  int pid() const { return transport_->get_pid(); }
  // -N when killed by signal N; nullopt while the child runs.
  std::optional<int> returncode() const { return transport_->get_returncode(); }

  // Set for the streams that are PIPE.
  std::optional<StreamWriter> stdin_;
  std::optional<StreamReader> stdout_, stderr_;

  // Waits for the child to exit; any number of tasks may wait at once.
  // Cancelling a wait does not affect the child.
  Coro<int> wait();
  // Writes `input` to stdin (then closes it) while reading stdout and stderr
  // to EOF, then waits for the exit. A child that exits without reading its
  // input is not an error (EPIPE and ECONNRESET are ignored).
  Coro<std::pair<std::string, std::string>> communicate(std::optional<std::string> input = {});
  void send_signal(int sig) { transport_->send_signal(sig); }
  void terminate() { transport_->terminate(); }
  void kill() { transport_->kill(); }

  SubprocessTransport& transport() const { return *transport_; }

 private:
  std::shared_ptr<SubprocessTransport> transport_;
  std::shared_ptr<subprocess_internal::StreamProtocol> protocol_;
};

Coro<Process> create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions options = {},
                                     std::source_location where = std::source_location::current());

namespace subprocess_internal {
template <class A>
constexpr bool is_options = std::is_same_v<std::remove_cvref_t<A>, SubprocessOptions>;

template <class... Args>
constexpr bool options_last_only() {
  constexpr size_t n = sizeof...(Args);
  constexpr bool flags[] = {is_options<Args>..., false};
  for (size_t i = 0; i + 1 < n; ++i) {
    if (flags[i]) return false;
  }
  return true;
}

template <class A>
void add_arg(std::vector<std::string>& argv, SubprocessOptions& options, A&& arg) {
  if constexpr (is_options<A>) {
    options = std::forward<A>(arg);
  } else {
    static_assert(std::is_convertible_v<A, std::string_view>,
                  "create_subprocess_exec: arguments are strings, then SubprocessOptions");
    argv.emplace_back(std::string_view(arg));
  }
}

// The program's name and the site of the call naming it: a defaulted
// argument cannot follow the parameter pack, a converting constructor's can.
struct ProgramAt {
  template <class S>
  requires std::is_convertible_v<const S&, std::string_view> ProgramAt(
      const S& name, std::source_location where = std::source_location::current())
      : name(name), where(where) {}
  std::string_view name;
  std::source_location where;
};
}  // namespace subprocess_internal

// Python's form: the program, its arguments, then the options if any.
//   co_await create_subprocess_exec("ls", "-l", SubprocessOptions{.stdout_ = subprocess::PIPE});
template <class... Args>
Coro<Process> create_subprocess_exec(subprocess_internal::ProgramAt program,
                                     Args&&... args_then_options) {
  static_assert(subprocess_internal::options_last_only<Args...>(),
                "create_subprocess_exec: SubprocessOptions must come last");
  std::vector<std::string> argv;
  argv.reserve(1 + sizeof...(Args));
  argv.emplace_back(program.name);
  SubprocessOptions options;
  (subprocess_internal::add_arg(argv, options, std::forward<Args>(args_then_options)), ...);
  return create_subprocess_exec(std::move(argv), std::move(options), program.where);
}

// `cmd` runs with /bin/sh -c.
Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options = {},
                                      std::source_location where = std::source_location::current());

}  // namespace asyncio
