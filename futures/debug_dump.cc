#include "futures/debug_dump.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "futures/futures.h"

namespace asyncio {
namespace futures_internal {
namespace {

// One dump: what each loop answered. Shared with the callbacks posted to
// the loops, which may run after the requester has given up waiting.
struct DumpRequest {
  struct Entry {
    uint64_t serial = 0;
    const EventLoop* loop = nullptr;
    bool on_this_thread = false;  // the requester runs this loop itself
    bool answered = false;
    bool closed = false;  // closed before it could answer
    pid_t thread = 0;
    std::string text;
  };
  TaskDumpFormat format;
  std::mutex mu;
  std::condition_variable answered;
  std::vector<Entry> entries;
};

std::string format_loop(EventLoop& loop, TaskDumpFormat format) {
  try {
    std::string text =
        format == TaskDumpFormat::kTable ? format_tasks_table(loop) : format_task_tree(loop);
    return text.empty() ? "(no pending tasks)\n" : text;
  } catch (const std::exception& e) {
    return std::string("(could not format the tasks: ") + e.what() + ")\n";
  }
}

// The callback a loop runs to answer. Destroyed without running when the
// loop is closed first: then it says so instead.
class Answer {
 public:
  Answer(std::shared_ptr<DumpRequest> request, size_t index, EventLoop& loop)
      : request_(std::move(request)), index_(index), loop_(&loop) {}
  Answer(Answer&& other) noexcept
      : request_(std::move(other.request_)), index_(other.index_), loop_(other.loop_) {}
  Answer& operator=(Answer&&) = delete;
  ~Answer() {
    if (request_) finish("", /*closed=*/true);
  }
  void operator()() {
    finish(format_loop(*loop_, request_->format), /*closed=*/false);
    request_.reset();
  }

 private:
  void finish(std::string text, bool closed) {
    std::lock_guard<std::mutex> lock(request_->mu);
    DumpRequest::Entry& entry = request_->entries[index_];
    entry.answered = true;
    entry.closed = closed;
    entry.thread = ::gettid();
    entry.text = std::move(text);
    request_->answered.notify_all();
  }

  std::shared_ptr<DumpRequest> request_;
  size_t index_;
  EventLoop* loop_;
};

void ask_loop(TaskRegistry& registry, void* context) {
  auto& request = *static_cast<std::shared_ptr<DumpRequest>*>(context);
  EventLoop& loop = registry.loop();
  size_t index;
  {
    std::lock_guard<std::mutex> lock(request->mu);
    index = request->entries.size();
    DumpRequest::Entry& entry = request->entries.emplace_back();
    entry.serial = registry.serial();
    entry.loop = &loop;
    if (running_loop_or_null() == &loop) {
      // This thread cannot answer a callback while it waits: the loop is
      // formatted directly once the registry lock is released.
      entry.on_this_thread = true;
      return;
    }
  }
  try {
    loop.call_soon_threadsafe(Answer(request, index, loop));
  } catch (const std::runtime_error&) {
    // Closed: the Answer, destroyed unrun, has recorded it.
  }
}

std::string loop_header(const DumpRequest::Entry& entry) {
  char text[96];
  std::snprintf(text, sizeof text, "loop #%" PRIu64 " at %p", entry.serial,
                static_cast<const void*>(entry.loop));
  return text;
}

bool write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Helper threads take no signals: they are meant for the program's threads
// (SIGINT for the loop running main, the dump signal's handler anywhere).
std::thread start_quiet_thread(void (*body)(int), int arg) {
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  std::thread thread;
  try {
    thread = std::thread(body, arg);
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return thread;
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// --- the dump signal --------------------------------------------------------

std::mutex g_signal_mu;
int g_signal_pipe_read = -1;
std::atomic<int> g_signal_pipe_write{-1};
std::atomic<int> g_signal_output_fd{2};

extern "C" void on_dump_signal(int) {
  const int saved_errno = errno;
  const char byte = 1;
  // Non-blocking: with the pipe full a dump is coming anyway.
  ssize_t ignored = ::write(g_signal_pipe_write.load(std::memory_order_relaxed), &byte, 1);
  (void)ignored;
  errno = saved_errno;
}

void signal_dump_thread(int pipe_read) {
  char bytes[64];
  for (;;) {
    ssize_t n = ::read(pipe_read, bytes, sizeof bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    write_all(g_signal_output_fd.load(), dump_all_tasks(TaskDumpFormat::kTree));
  }
}

// --- the debug socket -------------------------------------------------------

std::mutex g_socket_mu;
std::string* g_socket_path = nullptr;  // leaked: the server thread never ends

void remove_socket_file() {
  if (g_socket_path != nullptr) ::unlink(g_socket_path->c_str());
}

std::string read_command(int client) {
  std::string command;
  char c;
  while (command.size() < 64) {
    ssize_t n = ::read(client, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    if (c != '\r') command += c;
  }
  return command;
}

void serve_client(int client) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(client, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
      (peer.uid != ::getuid() && peer.uid != 0)) {
    return;
  }
  timeval io_timeout{5, 0};  // a client that stalls does not hold the server
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof io_timeout);
  ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof io_timeout);
  const std::string command = read_command(client);
  std::string reply;
  if (command == "ps") {
    reply = dump_all_tasks(TaskDumpFormat::kTable);
  } else if (command == "pstree") {
    reply = dump_all_tasks(TaskDumpFormat::kTree);
  } else {
    reply = "unknown command '" + command + "': expected ps or pstree\n";
  }
  write_all(client, reply);
}

void debug_socket_thread(int listener) {
  for (;;) {
    int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    serve_client(client);
    ::close(client);
  }
}

}  // namespace

void enable_debug_socket_from_environment() noexcept {
  static std::once_flag checked;
  std::call_once(checked, [] {
    const char* value = std::getenv("ASYNCIO_DEBUG_SOCKET");
    if (value == nullptr || *value == '\0' || std::string(value) == "0") return;
    try {
      enable_debug_socket(std::string(value) == "1" ? "" : value);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "asyncio: ASYNCIO_DEBUG_SOCKET=%s: no debug socket: %s\n", value,
                   e.what());
    }
  });
}

}  // namespace futures_internal

std::string dump_all_tasks(TaskDumpFormat format, std::chrono::milliseconds timeout) {
  using namespace futures_internal;
  auto request = std::make_shared<DumpRequest>();
  request->format = format;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  TaskRegistry::for_each_live(&ask_loop, &request);

  std::unique_lock<std::mutex> lock(request->mu);
  // The requester's own loop, if listed: it is alive, as this thread runs it.
  for (DumpRequest::Entry& entry : request->entries) {
    if (!entry.on_this_thread) continue;
    entry.answered = true;
    entry.thread = ::gettid();
    entry.text = format_loop(*running_loop_or_null(), format);
  }
  request->answered.wait_until(lock, deadline, [&] {
    for (const DumpRequest::Entry& entry : request->entries) {
      if (!entry.answered) return false;
    }
    return true;
  });
  std::string text;
  // Oldest loop first.
  for (auto it = request->entries.rbegin(); it != request->entries.rend(); ++it) {
    text += loop_header(*it);
    if (!it->answered) {
      text +=
          ": not responding (stuck in a callback, or not running); its tasks can be read with "
          "gdb: tools/gdb/asyncio_gdb.py\n";
    } else if (it->closed) {
      text += ": closed\n";
    } else {
      text += " (thread " + std::to_string(it->thread) + "):\n" + it->text;
    }
  }
  return text.empty() ? "no event loop has tasks\n" : text;
}

void enable_task_dump(int signo, int fd) {
  using namespace futures_internal;
  std::lock_guard<std::mutex> lock(g_signal_mu);
  g_signal_output_fd.store(fd);
  if (g_signal_pipe_read < 0) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("enable_task_dump: pipe");
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    try {
      start_quiet_thread(&signal_dump_thread, fds[0]).detach();
    } catch (...) {
      ::close(fds[0]);
      ::close(fds[1]);
      throw;
    }
    g_signal_pipe_read = fds[0];
    g_signal_pipe_write.store(fds[1]);
  }
  struct sigaction action {};
  action.sa_handler = &on_dump_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (::sigaction(signo, &action, nullptr) != 0) throw_errno("enable_task_dump: sigaction");
}

std::string enable_debug_socket(const std::string& path) {
  using namespace futures_internal;
  std::lock_guard<std::mutex> lock(g_socket_mu);
  if (g_socket_path != nullptr) return *g_socket_path;
  const std::string where =
      path.empty() ? "/tmp/asyncio-" + std::to_string(::getpid()) + ".sock" : path;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (where.size() >= sizeof address.sun_path) {
    throw std::invalid_argument("enable_debug_socket: path too long: " + where);
  }
  where.copy(address.sun_path, where.size());
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) throw_errno("enable_debug_socket: socket");
  // A socket left by an earlier process (one with this pid, say) is
  // replaced; any other kind of file is not touched.
  struct stat existing {};
  if (::lstat(where.c_str(), &existing) == 0 && S_ISSOCK(existing.st_mode)) {
    ::unlink(where.c_str());
  }
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::chmod(where.c_str(), 0600) != 0 || ::listen(listener, 8) != 0) {
    const int error = errno;
    ::close(listener);
    throw std::system_error(error, std::generic_category(), "enable_debug_socket: " + where);
  }
  try {
    start_quiet_thread(&debug_socket_thread, listener).detach();
  } catch (...) {
    ::close(listener);
    ::unlink(where.c_str());
    throw;
  }
  g_socket_path = new std::string(where);
  std::atexit(&remove_socket_file);
  return where;
}

}  // namespace asyncio
