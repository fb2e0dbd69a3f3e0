#include "subprocess/internal/transport.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "loop/posix.h"
#include "subprocess/internal/spawn.h"

namespace asyncio::subprocess_internal {

// ---------------------------------------------------------------------------
// ChildWatcher

namespace {

// 0: not exited yet; 1: reaped (*code set); -1: error (errno).
int try_reap(int pidfd, int* code) {
  siginfo_t si{};
  if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED | WNOHANG) != 0) return -1;
  if (si.si_pid == 0) return 0;
  *code = returncode_from(si.si_code, si.si_status);
  return 1;
}

}  // namespace

ChildWatcher& ChildWatcher::of(EventLoop& loop) {
  static const int slot = EventLoop::new_extension_slot();
  if (loop.is_closed()) throw std::runtime_error("Event loop is closed");
  LoopExtension* ext = loop.extension(slot);
  if (ext == nullptr) {
    auto watcher = std::make_unique<ChildWatcher>(loop);
    ext = watcher.get();
    loop.set_extension(slot, std::move(watcher));
  }
  return static_cast<ChildWatcher&>(*ext);
}

void ChildWatcher::watch(pid_t pid, int pidfd, std::weak_ptr<ChildTransport> owner) {
  children_[pidfd] = Child{pid, std::move(owner)};
  try {
    loop_.add_reader(pidfd, [this, pidfd] { on_ready(pidfd); });
  } catch (...) {
    children_.erase(pidfd);
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    reap_or_hand_off(pidfd);
    throw;
  }
}

void ChildWatcher::track(const std::shared_ptr<ChildTransport>& t) {
  live_[t.get()] = t;
  t->set_tracked(this);
}

void ChildWatcher::on_ready(int pidfd) {
  int code = 0;
  int r = try_reap(pidfd, &code);
  if (r == 0) return;  // spurious wakeup
  if (r < 0) {
    if (errno == EINTR) return;  // level-triggered: tried again
    // ECHILD: somebody else reaped it (a waitpid(-1) elsewhere); as asyncio,
    // the status is unknown.
    code = 255;
  }
  auto it = children_.find(pidfd);
  std::weak_ptr<ChildTransport> owner;
  if (it != children_.end()) {
    owner = std::move(it->second.owner);
    children_.erase(it);
  }
  loop_.remove_reader(pidfd);
  ::close(pidfd);
  if (auto t = owner.lock()) t->process_exited(code);
}

void ChildWatcher::on_close() noexcept {
  std::map<ChildTransport*, std::weak_ptr<ChildTransport>> live = std::move(live_);
  live_.clear();
  for (auto& [ptr, weak] : live) {
    if (auto t = weak.lock()) t->detach();
  }
  std::map<int, Child> children = std::move(children_);
  children_.clear();
  for (auto& [pidfd, child] : children) {
    loop_.remove_reader(pidfd);  // a no-op once the loop is closed
    reap_or_hand_off(pidfd);
  }
}

void reap_or_hand_off(int pidfd) noexcept {
  int code = 0;
  // A child that was just killed (a Process dropped at the end of
  // asyncio::run) is gone within milliseconds: wait for it here.
  for (int attempt = 0; attempt < 2; ++attempt) {
    int r = try_reap(pidfd, &code);
    if (r != 0 && !(r < 0 && errno == EINTR)) {
      ::close(pidfd);
      return;
    }
    if (attempt == 0) {
      pollfd p{pidfd, POLLIN, 0};
      ::poll(&p, 1, 50);
    }
  }
  // Still running: a background thread reaps it whenever it exits.
  auto reap = [pidfd] {
    siginfo_t si{};
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED) != 0 && errno == EINTR) {
    }
    ::close(pidfd);
  };
  try {
    std::thread(reap).detach();
  } catch (...) {
    reap();  // no thread to be had: block
  }
}

// ---------------------------------------------------------------------------
// ChildTransport

ChildTransport::ChildTransport(EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol,
                               pid_t pid, int pidfd, std::source_location opened_at)
    : loop_(loop),
      protocol_(std::move(protocol)),
      pid_(pid),
      pidfd_(pidfd),
      opened_at_(opened_at) {}

ChildTransport::~ChildTransport() {
  // Untracked: finished (nothing left to do; the loop may be gone) or
  // detached from a closed loop.
  if (watcher_ == nullptr) return;
  // Dropped unfinished: as asyncio's __del__, report it unless close() was
  // called, and close (kill) it. The watcher still reaps the child.
  report_if_unclosed();
  close();
  watcher_->untrack(this);
}

std::any ChildTransport::get_extra_info(std::string_view name) const {
  if (name == "pid") return static_cast<int>(pid_);
  return {};
}

void ChildTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto p = std::dynamic_pointer_cast<SubprocessProtocol>(protocol);
  if (!p) throw std::invalid_argument("set_protocol: not a SubprocessProtocol");
  protocol_ = std::move(p);
}

BaseTransport* ChildTransport::get_pipe_transport(int fd) const {
  if (fd < 0 || fd > 2) return nullptr;
  return pipes_[fd].get();
}

std::shared_ptr<Transport> ChildTransport::pipe(int fd) const {
  if (fd < 0 || fd > 2) return nullptr;
  return pipes_[fd];
}

void ChildTransport::send_signal(int sig) {
  // Once reaped, the pid may belong to another process: a pidfd never does.
  if (returncode_ || detached_) return;
  if (::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) != 0 && errno != ESRCH) {
    posix::throw_errno("pidfd_send_signal");
  }
}

void ChildTransport::terminate() { send_signal(SIGTERM); }
void ChildTransport::kill() { send_signal(SIGKILL); }

void ChildTransport::close() {
  if (closed_) return;
  closed_ = true;
  if (detached_) return;
  if (!loop_.is_closed()) {  // else the pipes are torn down by their loop
    for (auto& p : pipes_) {
      if (p) p->close();
    }
  }
  if (!returncode_) {
    ::syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
  }
}

Coro<int> ChildTransport::wait() {
  std::shared_ptr<ChildTransport> keep = self();
  if (returncode_) co_return *returncode_;
  if (detached_) throw std::runtime_error("Event loop is closed");
  std::erase_if(exit_waiters_, [](const Future<int>& f) { return f.done(); });
  Future<int> waiter = create_future<int>(loop_);
  exit_waiters_.push_back(waiter);
  co_return co_await waiter;
}

void ChildTransport::call(absl::AnyInvocable<void()> fn) {
  if (pending_) {
    pending_->push_back(std::move(fn));
  } else {
    fn();
  }
}

void ChildTransport::connected() {
  std::shared_ptr<ChildTransport> keep = self();
  if (detached_ || !pending_) return;
  if (protocol_) protocol_->connection_made(keep);
  // What arrived while the pipes were being connected, in order; more may be
  // queued by these calls.
  while (pending_ && !pending_->empty()) {
    std::vector<absl::AnyInvocable<void()>> calls = std::move(*pending_);
    pending_->clear();
    for (auto& fn : calls) fn();
  }
  pending_.reset();
  try_finish();
}

void ChildTransport::pipe_data(int fd, std::string_view data) {
  if (detached_) return;
  if (pending_) {
    pending_->push_back([this, fd, copy = std::string(data)] {
      if (protocol_) protocol_->pipe_data_received(fd, copy);
    });
    return;
  }
  if (protocol_) protocol_->pipe_data_received(fd, data);
}

void ChildTransport::pipe_lost(int fd, std::exception_ptr exc) {
  if (detached_) return;
  std::shared_ptr<ChildTransport> keep = self();
  call([this, fd, exc] {
    if (protocol_) protocol_->pipe_connection_lost(fd, exc);
  });
  pipe_open_[fd] = false;
  try_finish();
}

void ChildTransport::pause_writing() {
  if (detached_) return;
  call([this] {
    if (protocol_) protocol_->pause_writing();
  });
}

void ChildTransport::resume_writing() {
  if (detached_) return;
  call([this] {
    if (protocol_) protocol_->resume_writing();
  });
}

void ChildTransport::process_exited(int returncode) {
  if (detached_) return;
  std::shared_ptr<ChildTransport> keep = self();
  returncode_ = returncode;
  call([this] {
    if (protocol_) protocol_->process_exited();
  });
  // wait() returns at the exit, even if a grandchild keeps a pipe open.
  std::vector<Future<int>> waiters = std::move(exit_waiters_);
  exit_waiters_.clear();
  for (Future<int>& w : waiters) {
    if (!w.done()) w.set_result(returncode);
  }
  try_finish();
}

void ChildTransport::try_finish() {
  if (finished_ || detached_ || pending_ || !returncode_) return;
  for (bool open : pipe_open_) {
    if (open) return;
  }
  finished_ = true;
  // connection_lost on the next iteration, as asyncio (at once if the loop is
  // closing).
  if (loop_.is_closed()) {
    finish();
    return;
  }
  loop_.call_soon([self = self()] { self->finish(); });
}

// Delivers connection_lost; then the transport lets go of its protocol (which
// may hold the transport) and of its pipes.
void ChildTransport::finish() {
  if (detached_) return;
  std::shared_ptr<ChildTransport> keep = self();
  std::shared_ptr<SubprocessProtocol> protocol = std::move(protocol_);
  protocol_.reset();
  for (auto& p : pipes_) p.reset();
  if (watcher_ != nullptr) std::exchange(watcher_, nullptr)->untrack(this);
  if (protocol) protocol->connection_lost(nullptr);
}

void ChildTransport::report_if_unclosed() {
  if (closed_) return;
  std::string state = returncode_ ? "returncode=" + std::to_string(*returncode_) : "running";
  report_unclosed(&loop_,
                  "transport <SubprocessTransport pid=" + std::to_string(pid_) + " " + state + ">",
                  opened_at_);
}

void ChildTransport::detach() {
  std::shared_ptr<ChildTransport> keep = self();
  report_if_unclosed();  // the loop closes with it open
  detached_ = true;
  watcher_ = nullptr;
  pending_.reset();
  exit_waiters_.clear();
  std::shared_ptr<SubprocessProtocol> protocol = std::move(protocol_);
  protocol_.reset();
  for (auto& p : pipes_) p.reset();
  protocol.reset();
}

// ---------------------------------------------------------------------------
// PipeProtocol

void PipeProtocol::data_received(std::string_view data) {
  if (fd_ == 0) return;  // a child writing to its stdin: nothing to do with it
  if (auto t = owner_.lock()) t->pipe_data(fd_, data);
}

void PipeProtocol::connection_lost(std::exception_ptr exc) {
  if (auto t = owner_.lock()) t->pipe_lost(fd_, exc);
}

void PipeProtocol::pause_writing() {
  if (auto t = owner_.lock()) t->pause_writing();
}

void PipeProtocol::resume_writing() {
  if (auto t = owner_.lock()) t->resume_writing();
}

}  // namespace asyncio::subprocess_internal
