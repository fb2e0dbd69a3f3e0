#include "subprocess/subprocess.h"

#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <tuple>
#include <utility>

#include "loop/posix.h"
#include "subprocess/internal/spawn.h"
#include "subprocess/internal/transport.h"

namespace asyncio {
namespace subprocess_internal {

SubprocessOptions all_pipes() {
  SubprocessOptions options;
  options.stdin_ = subprocess::PIPE;
  options.stdout_ = subprocess::PIPE;
  options.stderr_ = subprocess::PIPE;
  return options;
}

std::vector<std::string> shell_argv(std::string cmd) {
  std::vector<std::string> argv;
  argv.reserve(3);
  argv.emplace_back("/bin/sh");
  argv.emplace_back("-c");
  argv.push_back(std::move(cmd));
  return argv;
}

Coro<std::shared_ptr<SubprocessTransport>> spawn(EventLoop& loop,
                                                 std::shared_ptr<SubprocessProtocol> protocol,
                                                 std::vector<std::string> argv,
                                                 SubprocessOptions options,
                                                 std::source_location where) {
  if (!protocol) throw std::invalid_argument("subprocess: null protocol");
  ChildWatcher& watcher = ChildWatcher::of(loop);
  SpawnedChild child = spawn_child(argv, options);
  // The parent's ends not yet handed to a transport are closed on any exit.
  posix::UniqueFd pipes[3];
  for (int fd = 0; fd < 3; ++fd) pipes[fd].reset(child.pipes[fd]);
  auto transport =
      std::make_shared<ChildTransport>(loop, std::move(protocol), child.pid, child.pidfd, where);
  // Watched first: if that fails, the child is killed and reaped, and the
  // transport (not tracked yet) is inert.
  watcher.watch(child.pid, child.pidfd, transport);
  watcher.track(transport);
  // From here on, the watcher reaps the child whatever happens.
  try {
    for (int fd = 0; fd < 3; ++fd) {
      if (!pipes[fd]) continue;
      transport->pipe_opening(fd);
      auto pipe_protocol = std::make_shared<PipeProtocol>(transport, fd);
      auto factory = [pipe_protocol] { return pipe_protocol; };  // not inside co_await
      // connect_accepted_socket owns the socket from its first step on. No
      // site: the child's transport reports for its pipes.
      auto connecting =
          connect_accepted_socket(loop, factory, pipes[fd].release(), std::source_location());
      auto connected = co_await std::move(connecting);
      transport->set_pipe(fd, std::move(connected.first));
    }
  } catch (...) {
    transport->close();  // kills the child
    throw;
  }
  transport->connected();
  co_return transport;
}

// Feeds Process's streams from the transport (asyncio's
// SubprocessStreamProtocol).
class StreamProtocol final : public SubprocessProtocol {
 public:
  StreamProtocol(EventLoop& loop, const SubprocessOptions& options)
      : stdin_protocol_(std::make_shared<streams_internal::StreamReaderProtocol>(
            StreamReader(kDefaultStreamLimit, &loop), loop)),
        stdin_pipe_(options.stdin_ == subprocess::PIPE) {
    if (options.stdout_ == subprocess::PIPE) stdout_.emplace(options.limit, &loop);
    if (options.stderr_ == subprocess::PIPE) stderr_.emplace(options.limit, &loop);
  }

  void connection_made(std::shared_ptr<BaseTransport> transport) override {
    auto& t = static_cast<ChildTransport&>(*transport);
    if (stdin_pipe_) {
      if (std::shared_ptr<Transport> pipe = t.pipe(0))
        stdin_.emplace(pipe, stdin_protocol_, std::nullopt);
    }
    if (stdout_) {
      if (std::shared_ptr<Transport> pipe = t.pipe(1)) stdout_->set_transport(pipe);
    }
    if (stderr_) {
      if (std::shared_ptr<Transport> pipe = t.pipe(2)) stderr_->set_transport(pipe);
    }
  }
  void pipe_data_received(int fd, std::string_view data) override {
    if (StreamReader* r = reader(fd)) r->feed_data(data);
  }
  void pipe_connection_lost(int fd, std::exception_ptr exc) override {
    if (fd == 0) {
      stdin_protocol_->connection_lost(exc);
      return;
    }
    if (StreamReader* r = reader(fd)) {
      if (exc) {
        r->set_exception(exc);
      } else {
        r->feed_eof();
      }
    }
  }
  void pause_writing() override { stdin_protocol_->pause_writing(); }
  void resume_writing() override { stdin_protocol_->resume_writing(); }

  std::optional<StreamWriter> stdin_;
  std::optional<StreamReader> stdout_, stderr_;

 private:
  StreamReader* reader(int fd) {
    if (fd == 1 && stdout_) return &*stdout_;
    if (fd == 2 && stderr_) return &*stderr_;
    return nullptr;
  }

  std::shared_ptr<streams_internal::StreamReaderProtocol> stdin_protocol_;
  bool stdin_pipe_;
};

namespace {

Coro<void> feed_stdin(std::optional<StreamWriter> writer, std::optional<std::string> input) {
  if (!writer) co_return;
  if (input && !input->empty()) {
    writer->write(*input);
    try {
      co_await writer->drain();
    } catch (const std::system_error& e) {
      // The child exited (or closed its stdin) without reading everything.
      if (e.code().value() != EPIPE && e.code().value() != ECONNRESET) throw;
    }
  }
  writer->close();
}

Coro<std::string> read_stream(std::optional<StreamReader> reader,
                              std::shared_ptr<SubprocessTransport> transport, int fd) {
  if (!reader) co_return std::string();
  std::string output = co_await reader->read();
  if (BaseTransport* pipe = transport->get_pipe_transport(fd)) pipe->close();
  co_return output;
}

}  // namespace
}  // namespace subprocess_internal

// ---------------------------------------------------------------------------
// Process

Process::Process(std::shared_ptr<SubprocessTransport> transport,
                 std::shared_ptr<subprocess_internal::StreamProtocol> protocol)
    : stdin_(protocol->stdin_),
      stdout_(protocol->stdout_),
      stderr_(protocol->stderr_),
      transport_(std::move(transport)),
      protocol_(std::move(protocol)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (transport_) transport_->close();
    stdin_ = std::move(other.stdin_);
    stdout_ = std::move(other.stdout_);
    stderr_ = std::move(other.stderr_);
    transport_ = std::move(other.transport_);
    protocol_ = std::move(other.protocol_);
  }
  return *this;
}

Process::~Process() {
  if (transport_) transport_->close();
}

Coro<int> Process::wait() {
  auto transport = std::static_pointer_cast<subprocess_internal::ChildTransport>(transport_);
  co_return co_await transport->wait();
}

Coro<std::pair<std::string, std::string>> Process::communicate(std::optional<std::string> input) {
  std::shared_ptr<SubprocessTransport> transport = transport_;
  auto feeding = subprocess_internal::feed_stdin(stdin_, std::move(input));
  auto out = subprocess_internal::read_stream(stdout_, transport, 1);
  auto err = subprocess_internal::read_stream(stderr_, transport, 2);
  auto all = gather(std::move(feeding), std::move(out), std::move(err));
  auto results = co_await all;
  auto child = std::static_pointer_cast<subprocess_internal::ChildTransport>(transport);
  co_await child->wait();
  co_return std::make_pair(std::move(std::get<1>(results)), std::move(std::get<2>(results)));
}

// ---------------------------------------------------------------------------
// Creating processes

Coro<Process> create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions options,
                                     std::source_location where) {
  EventLoop& loop = get_running_loop();
  auto protocol = std::make_shared<subprocess_internal::StreamProtocol>(loop, options);
  auto spawning =
      subprocess_internal::spawn(loop, protocol, std::move(argv), std::move(options), where);
  std::shared_ptr<SubprocessTransport> transport = co_await std::move(spawning);
  co_return Process(std::move(transport), std::move(protocol));
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options,
                                      std::source_location where) {
  return create_subprocess_exec(subprocess_internal::shell_argv(std::move(cmd)), std::move(options),
                                where);
}

}  // namespace asyncio
