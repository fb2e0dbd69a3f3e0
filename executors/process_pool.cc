#include "executors/process_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>

#include "loop/posix.h"

namespace asyncio::concurrent {

using executors_internal::Call;
using executors_internal::FunctionEntry;
using executors_internal::FunctionTable;
using executors_internal::Invoker;
using executors_internal::kFrameHeaderSize;
using executors_internal::ProcessJob;
using executors_internal::WireReader;
using posix::throw_errno;

namespace {

constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusError = 1;
constexpr char kSpawnCommand = 'S';
constexpr int kServerFd = 3;  // the fork server's control socket, after fork
constexpr const char* kTerminated =
    "A process in the process pool was terminated abruptly while the future was running or "
    "pending";

// Reads exactly n bytes; false on EOF or error.
bool read_full(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Writes all of `data` (MSG_NOSIGNAL: a dead peer is EPIPE, not SIGPIPE).
bool write_full(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t r = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    data.remove_prefix(static_cast<size_t>(r));
  }
  return true;
}

// A frame: u64 length, then the body. The sender has checked the size.
bool write_frame(int fd, std::string_view body) {
  uint64_t n = body.size();
  return write_full(fd, std::string_view(reinterpret_cast<const char*>(&n), sizeof(n))) &&
         write_full(fd, body);
}

enum class ReadStatus { kFrame, kClosed, kMalformed };

ReadStatus read_frame(int fd, std::string* body, uint64_t max_frame_size) {
  char header[kFrameHeaderSize];
  if (!read_full(fd, header, sizeof(header))) return ReadStatus::kClosed;
  uint64_t n = 0;
  try {
    n = executors_internal::frame_length(std::string_view(header, sizeof(header)), max_frame_size);
  } catch (const std::length_error&) {
    return ReadStatus::kMalformed;
  }
  // Grown as the bytes arrive, so that a length that lies costs no memory.
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  body->clear();
  while (body->size() < n) {
    size_t have = body->size();
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(kChunk, n - have));
    body->resize(have + chunk);
    if (!read_full(fd, body->data() + have, chunk)) return ReadStatus::kClosed;
  }
  return ReadStatus::kFrame;
}

// An error answer: status, type name, message.
std::string error_answer(const std::string& type, const std::string& what) {
  std::string answer(1, static_cast<char>(kStatusError));
  executors_internal::wire_put(answer, type);
  executors_internal::wire_put(answer, what);
  return answer;
}

void close_from(int lowest) {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(lowest), ~0U, 0) == 0) return;
#endif
  long max_fd = ::sysconf(_SC_OPEN_MAX);
  if (max_fd < 0) max_fd = 4096;
  for (int fd = lowest; fd < max_fd; ++fd) ::close(fd);
}

// --- in the worker process ---------------------------------------------------

// A malformed frame (over the limit) leaves no way to find the next one:
// the worker exits, and the parent fails its job with BrokenProcessPool.
[[noreturn]] void worker_main(int fd, const FunctionTable& functions, uint64_t max_frame_size) {
  std::string request;
  std::string response;
  while (read_frame(fd, &request, max_frame_size) == ReadStatus::kFrame) {
    response.assign(1, static_cast<char>(kStatusOk));
    try {
      Call call = executors_internal::parse_call(request, functions.entries,
                                                 functions.count.load(std::memory_order_acquire));
      call.function.invoker(call.function.fn, call.args, &response);
      if (response.size() > max_frame_size) {
        throw std::length_error(
            "process pool: the result takes " + std::to_string(response.size()) +
            " bytes, more than the largest frame (" + std::to_string(max_frame_size) + " bytes)");
      }
    } catch (const std::exception& e) {
      response = error_answer(posix::demangled_type_name(typeid(e)), e.what());
    } catch (...) {
      response = error_answer("unknown exception", "unknown exception");
    }
    if (response.size() > max_frame_size) {
      response = error_answer("std::length_error", "process pool: the error message is too long");
    }
    if (!write_frame(fd, response)) break;
  }
  ::_exit(0);
}

// --- in the fork server --------------------------------------------------------

// Sends a new worker's socket (or -errno as the pid when fork failed).
void send_worker(int ctrl, pid_t pid, int fd) {
  int32_t payload = static_cast<int32_t>(pid);
  iovec iov{&payload, sizeof(payload)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  while (::sendmsg(ctrl, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

void spawn_one(int ctrl, const FunctionTable& functions, uint64_t max_frame_size) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    send_worker(ctrl, -errno, -1);
    return;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ctrl);
    ::close(sv[0]);
    ::signal(SIGCHLD, SIG_DFL);  // the worker's own children are its business
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // a crashing job should not dump core
    worker_main(sv[1], functions, max_frame_size);
  }
  if (pid < 0) {
    send_worker(ctrl, -errno, -1);
  } else {
    send_worker(ctrl, pid, sv[0]);
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

[[noreturn]] void server_main(int ctrl, const FunctionTable& functions, uint64_t max_frame_size) {
  // The parent writes the table; this process and the workers only read it.
  ::mprotect(const_cast<FunctionTable*>(&functions), sizeof(FunctionTable), PROT_READ);
  // Only the control socket and the standard streams stay open.
  if (ctrl != kServerFd) {
    ::dup2(ctrl, kServerFd);
    ::close(ctrl);
  }
  close_from(kServerFd + 1);
  // Handlers installed by the program (an event loop's signal handlers write
  // to descriptors that are closed now) go back to the default; the fault
  // handlers of sanitizers or crash reporters stay.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE ||
        sig == SIGILL) {
      continue;
    }
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;
    if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) ::signal(sig, SIG_DFL);
  }
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGCHLD, SIG_IGN);  // workers are reaped automatically
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  while (true) {
    char cmd = 0;
    ssize_t n = ::read(kServerFd, &cmd, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (cmd == kSpawnCommand) spawn_one(kServerFd, functions, max_frame_size);
  }
  ::close(kServerFd);
  // Workers see EOF once the parent has closed their sockets; wait for all
  // of them (with SIGCHLD ignored, wait() returns ECHILD when none is left).
  while (::wait(nullptr) > 0 || errno == EINTR) {
  }
  ::_exit(0);
}

int default_process_workers() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

uint64_t executors_internal::frame_length(std::string_view header, uint64_t max_frame_size) {
  if (header.size() != kFrameHeaderSize) {
    throw std::invalid_argument("process pool: a frame header is " +
                                std::to_string(kFrameHeaderSize) + " bytes");
  }
  uint64_t n = 0;
  std::memcpy(&n, header.data(), sizeof(n));
  if (n > max_frame_size) {
    throw std::length_error("process pool: malformed frame: " + std::to_string(n) +
                            " bytes announced, the limit is " + std::to_string(max_frame_size));
  }
  return n;
}

std::optional<std::string_view> executors_internal::next_frame(std::string_view& stream,
                                                               uint64_t max_frame_size) {
  if (stream.size() < kFrameHeaderSize) return std::nullopt;
  uint64_t n = frame_length(stream.substr(0, kFrameHeaderSize), max_frame_size);
  if (stream.size() - kFrameHeaderSize < n) return std::nullopt;
  std::string_view body = stream.substr(kFrameHeaderSize, static_cast<size_t>(n));
  stream.remove_prefix(kFrameHeaderSize + static_cast<size_t>(n));
  return body;
}

Call executors_internal::parse_call(std::string_view body, const FunctionEntry* functions,
                                    uint32_t function_count) {
  uint32_t index = 0;
  if (body.size() < sizeof(index)) throw std::runtime_error("process pool: malformed call");
  std::memcpy(&index, body.data(), sizeof(index));
  if (index >= function_count) {
    throw std::runtime_error("process pool: malformed call: unknown function " +
                             std::to_string(index));
  }
  body.remove_prefix(sizeof(index));
  return Call{functions[index], body};
}

std::exception_ptr executors_internal::remote_exception(const std::string& type,
                                                        const std::string& what) {
  if (type == "std::runtime_error") return std::make_exception_ptr(std::runtime_error(what));
  if (type == "std::logic_error") return std::make_exception_ptr(std::logic_error(what));
  if (type == "std::invalid_argument") return std::make_exception_ptr(std::invalid_argument(what));
  if (type == "std::out_of_range") return std::make_exception_ptr(std::out_of_range(what));
  if (type == "std::domain_error") return std::make_exception_ptr(std::domain_error(what));
  if (type == "std::length_error") return std::make_exception_ptr(std::length_error(what));
  if (type == "std::range_error") return std::make_exception_ptr(std::range_error(what));
  if (type == "std::overflow_error") return std::make_exception_ptr(std::overflow_error(what));
  if (type == "std::underflow_error") return std::make_exception_ptr(std::underflow_error(what));
  if (type == "std::bad_alloc") return std::make_exception_ptr(std::bad_alloc());
  if (type == "asyncio::TimeoutError") return std::make_exception_ptr(TimeoutError(what));
  if (type == "asyncio::concurrent::BrokenProcessPool") {
    return std::make_exception_ptr(BrokenProcessPool(what));
  }
  return std::make_exception_ptr(std::runtime_error(type + ": " + what));
}

struct ProcessPoolExecutor::Worker {
  int fd = -1;
  pid_t pid = -1;
  std::unique_ptr<ProcessJob> job;  // the job it is running
};

ProcessPoolExecutor::ProcessPoolExecutor(int max_workers, uint64_t max_frame_size)
    : max_workers_(max_workers == 0 ? default_process_workers() : max_workers),
      max_frame_size_(max_frame_size) {
  if (max_workers < 0) throw std::invalid_argument("max_workers must be greater than 0");
  if (max_frame_size < kMinFrameSize) {
    throw std::invalid_argument("max_frame_size must be at least " + std::to_string(kMinFrameSize));
  }
  void* table = ::mmap(nullptr, sizeof(FunctionTable), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (table == MAP_FAILED) throw_errno("mmap");
  functions_ = new (table) FunctionTable();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    int err = errno;
    ::munmap(functions_, sizeof(FunctionTable));
    throw_errno("socketpair", err);
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    ::munmap(functions_, sizeof(FunctionTable));
    throw_errno("fork", err);
  }
  if (pid == 0) {
    ::close(sv[0]);
    server_main(sv[1], *functions_, max_frame_size_);
  }
  ::close(sv[1]);
  server_fd_ = sv[0];
  server_pid_ = pid;
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  try {
    if (wake_fd_ < 0) throw_errno("eventfd");
    for (int i = 0; i < max_workers_; ++i) workers_.push_back(spawn_worker());
    manager_ = std::thread([this] { manager_main(); });
  } catch (...) {
    for (Worker& w : workers_) ::close(w.fd);
    workers_.clear();
    ::close(server_fd_);
    while (::waitpid(server_pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (wake_fd_ >= 0) ::close(wake_fd_);
    ::munmap(functions_, sizeof(FunctionTable));
    throw;
  }
}

ProcessPoolExecutor::~ProcessPoolExecutor() {
  shutdown(/*wait=*/true);
  std::lock_guard<std::mutex> join_lock(join_mu_);
  if (manager_.joinable()) manager_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  ::munmap(functions_, sizeof(FunctionTable));
}

uint32_t ProcessPoolExecutor::function_index(Invoker invoker, uintptr_t fn) {
  std::lock_guard<std::mutex> lock(mu_);
  // Only this process writes the table, under mu_.
  uint32_t count = functions_->count.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < count; ++i) {
    const FunctionEntry& e = functions_->entries[i];
    if (e.invoker == invoker && e.fn == fn) return i;
  }
  if (count == FunctionTable::kCapacity) {
    throw std::length_error("process pool: more than " + std::to_string(FunctionTable::kCapacity) +
                            " distinct functions submitted");
  }
  functions_->entries[count] = FunctionEntry{invoker, fn};
  functions_->count.store(count + 1, std::memory_order_release);
  return count;
}

void ProcessPoolExecutor::check_call_size(size_t size) const {
  if (size > max_frame_size_) {
    throw std::invalid_argument("process pool: the call's arguments take " + std::to_string(size) +
                                " bytes, more than the largest frame (" +
                                std::to_string(max_frame_size_) + " bytes)");
  }
}

ProcessPoolExecutor::Worker ProcessPoolExecutor::spawn_worker() {
  char cmd = kSpawnCommand;
  if (!write_full(server_fd_, std::string_view(&cmd, 1))) {
    throw BrokenProcessPool("the process pool's fork server is gone");
  }
  int32_t pid = 0;
  iovec iov{&pid, sizeof(pid)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(server_fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    }
  }
  if (n != static_cast<ssize_t>(sizeof(pid)) || pid <= 0 || fd < 0) {
    if (fd >= 0) ::close(fd);
    if (n == static_cast<ssize_t>(sizeof(pid)) && pid < 0) {
      throw_errno("fork of a process pool worker", -pid);
    }
    throw BrokenProcessPool("the process pool's fork server is gone");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    pids_.push_back(pid);
  }
  Worker w;
  w.fd = fd;
  w.pid = pid;
  return w;
}

std::vector<pid_t> ProcessPoolExecutor::worker_pids() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pids_;
}

void ProcessPoolExecutor::wake() {
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

void ProcessPoolExecutor::enqueue(std::unique_ptr<ProcessJob> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) throw std::runtime_error("cannot schedule new futures after shutdown");
    if (broken_) throw BrokenProcessPool("the process pool cannot start workers any more");
    queue_.push_back(std::move(job));
  }
  wake();
}

void ProcessPoolExecutor::execute(absl::AnyInvocable<void()>) {
  throw std::invalid_argument(
      "ProcessPoolExecutor cannot run closures; submit a plain function pointer");
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  std::deque<std::unique_ptr<ProcessJob>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    if (cancel_futures) dropped.swap(queue_);
  }
  for (auto& job : dropped) job->cancel();
  dropped.clear();
  wake();
  if (!wait) return;
  std::lock_guard<std::mutex> join_lock(join_mu_);
  if (manager_.joinable() && manager_.get_id() != std::this_thread::get_id()) manager_.join();
}

void ProcessPoolExecutor::manager_main() {
  std::vector<pollfd> fds;
  std::vector<std::unique_ptr<ProcessJob>> dropped;   // cancelled while queued
  std::vector<std::unique_ptr<ProcessJob>> orphaned;  // no worker can run them
  std::string body;
  bool broken = false;  // the fork server is gone: no more workers

  auto worker_died = [&](size_t i, const char* what) {
    Worker& w = workers_[i];
    ::close(w.fd);
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::erase(pids_, w.pid);
    }
    if (w.job) {
      w.job->fail(std::make_exception_ptr(
          BrokenProcessPool(std::string(what) + " (pid " + std::to_string(w.pid) + ")")));
      w.job.reset();
    }
    workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(i));
    if (!broken) {
      try {
        workers_.push_back(spawn_worker());
      } catch (...) {
        broken = true;
      }
    }
  };

  while (true) {
    // Hand queued jobs to idle workers.
    std::vector<size_t> assigned;
    bool finished = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < workers_.size() && !queue_.empty(); ++i) {
        if (workers_[i].job) continue;
        while (!queue_.empty()) {
          std::unique_ptr<ProcessJob> job = std::move(queue_.front());
          queue_.pop_front();
          if (job->start()) {
            workers_[i].job = std::move(job);
            assigned.push_back(i);
            break;
          }
          dropped.push_back(std::move(job));
        }
      }
      if (broken && workers_.empty()) {
        // Nothing can run the queue any more.
        broken_ = true;
        for (auto& job : queue_) orphaned.push_back(std::move(job));
        queue_.clear();
      }
      bool busy = false;
      for (const Worker& w : workers_) busy = busy || w.job != nullptr;
      finished = shutdown_ && queue_.empty() && !busy;
    }
    dropped.clear();
    for (auto& job : orphaned) {
      if (job->start()) {
        job->fail(std::make_exception_ptr(
            BrokenProcessPool("the process pool cannot start workers any more")));
      }
    }
    orphaned.clear();
    for (size_t k = assigned.size(); k-- > 0;) {
      size_t i = assigned[k];
      if (!write_frame(workers_[i].fd, workers_[i].job->request)) worker_died(i, kTerminated);
    }
    if (finished) break;

    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    for (const Worker& w : workers_) fds.push_back({w.fd, POLLIN, 0});
    int rc = ::poll(fds.data(), fds.size(), -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) {
      uint64_t count;
      ssize_t ignored = ::read(wake_fd_, &count, sizeof(count));
      (void)ignored;
    }
    // Back to front, so that erasing a dead worker keeps the indices valid.
    for (size_t k = fds.size() - 1; k >= 1; --k) {
      if (fds[k].revents == 0) continue;
      size_t i = k - 1;
      Worker& w = workers_[i];
      ReadStatus status = (fds[k].revents & POLLIN) ? read_frame(w.fd, &body, max_frame_size_)
                                                    : ReadStatus::kClosed;
      if (status == ReadStatus::kFrame && body.empty()) status = ReadStatus::kMalformed;
      if (status != ReadStatus::kFrame) {
        // A malformed answer: the stream cannot be trusted any more, so the
        // worker goes (closing its socket ends it) as if it had died.
        worker_died(i, status == ReadStatus::kClosed
                           ? kTerminated
                           : "A process in the process pool sent a malformed answer");
        continue;
      }
      std::unique_ptr<ProcessJob> job = std::move(w.job);
      if (!job) continue;  // an answer nobody asked for
      std::string_view payload(body);
      payload.remove_prefix(1);
      if (static_cast<uint8_t>(body[0]) == kStatusOk) {
        job->deliver(payload);
      } else {
        std::exception_ptr error;
        try {
          WireReader in(payload);
          std::string type = in.get<std::string>();
          std::string what = in.get<std::string>();
          error = executors_internal::remote_exception(type, what);
        } catch (...) {
          error = std::current_exception();
        }
        job->fail(std::move(error));  // outside the catch block: it keeps no reference
      }
    }
  }

  // Shut down: closing the sockets makes the workers exit; closing the
  // control socket makes the fork server wait for them and exit.
  for (Worker& w : workers_) ::close(w.fd);
  workers_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    pids_.clear();
  }
  ::close(server_fd_);
  server_fd_ = -1;
  while (::waitpid(server_pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace asyncio::concurrent
