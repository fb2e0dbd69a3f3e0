// The SubprocessTransport implementation and the per-loop child watcher.
#pragma once

#include <sys/types.h>

#include <any>
#include <array>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "futures/futures.h"
#include "loop/loop.h"
#include "subprocess/subprocess.h"
#include "transports/transports.h"

namespace asyncio::subprocess_internal {

class ChildTransport;

// Watches this loop's children: a reader on each child's pidfd, then
// waitid(P_PIDFD) for that child only (no SIGCHLD, no waitpid(-1)). When the
// loop closes, the transports still open are detached from it and the
// children still unreaped are reaped (a short wait, then a background
// thread): no zombie is left behind.
class ChildWatcher final : public LoopExtension {
 public:
  explicit ChildWatcher(EventLoop& loop) : loop_(loop) {}
  ~ChildWatcher() override { on_close(); }
  // The loop's watcher, created on first use; throws if the loop is closed.
  static ChildWatcher& of(EventLoop& loop);

  // Takes ownership of `pidfd`; the owner hears process_exited() when the
  // child has been reaped.
  void watch(pid_t pid, int pidfd, std::weak_ptr<ChildTransport> owner);
  // Transports that are not finished: detached when the loop closes.
  void track(const std::shared_ptr<ChildTransport>& t);
  void untrack(ChildTransport* t) { live_.erase(t); }

  void on_close() noexcept override;

 private:
  struct Child {
    pid_t pid;
    std::weak_ptr<ChildTransport> owner;
  };
  void on_ready(int pidfd);

  EventLoop& loop_;
  std::map<int, Child> children_;  // by pidfd
  std::map<ChildTransport*, std::weak_ptr<ChildTransport>> live_;
};

// Blocks until the child of `pidfd` is reaped if it is about to be (it was
// killed), else hands it to a background thread; closes the pidfd.
void reap_or_hand_off(int pidfd) noexcept;

class ChildTransport final : public SubprocessTransport {
 public:
  // `opened_at`: the site reported if it goes unclosed.
  ChildTransport(EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol, pid_t pid,
                 int pidfd, std::source_location opened_at);
  ~ChildTransport() override;

  // BaseTransport
  void close() override;
  bool is_closing() const override { return closed_; }
  std::any get_extra_info(std::string_view name) const override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

  // SubprocessTransport
  int get_pid() const override { return pid_; }
  std::optional<int> get_returncode() const override { return returncode_; }
  BaseTransport* get_pipe_transport(int fd) const override;
  void send_signal(int sig) override;
  void terminate() override;
  void kill() override;

  // --- for the package -----------------------------------------------------
  std::shared_ptr<Transport> pipe(int fd) const;
  Coro<int> wait();
  // A pipe is being connected (before its transport exists).
  void pipe_opening(int fd) { pipe_open_[fd] = true; }
  void set_pipe(int fd, std::shared_ptr<Transport> transport) { pipes_[fd] = std::move(transport); }
  // Calls connection_made, then what arrived meanwhile.
  void connected();

  void pipe_data(int fd, std::string_view data);
  void pipe_lost(int fd, std::exception_ptr exc);
  void pause_writing();
  void resume_writing();
  void process_exited(int returncode);
  // The loop is closing: forget it (no signal, no callback after this).
  void detach();
  void set_tracked(ChildWatcher* watcher) { watcher_ = watcher; }

 private:
  void call(absl::AnyInvocable<void()> fn);
  // Python's "unclosed transport" ResourceWarning, unless close() was called.
  void report_if_unclosed();
  void try_finish();
  void finish();
  std::shared_ptr<ChildTransport> self() {
    return std::static_pointer_cast<ChildTransport>(shared_from_this());
  }

  EventLoop& loop_;
  std::shared_ptr<SubprocessProtocol> protocol_;
  pid_t pid_;
  int pidfd_;  // owned by the watcher; valid while !returncode_ && !detached_
  std::optional<int> returncode_;
  std::array<std::shared_ptr<Transport>, 3> pipes_;
  std::array<bool, 3> pipe_open_ = {false, false, false};
  std::vector<Future<int>> exit_waiters_;
  // Calls held back until connection_made (engaged until connected()).
  std::optional<std::vector<absl::AnyInvocable<void()>>> pending_{std::in_place};
  bool closed_ = false;
  bool detached_ = false;
  bool finished_ = false;            // connection_lost is scheduled
  ChildWatcher* watcher_ = nullptr;  // set while tracked by it
  std::source_location opened_at_;
};

// The protocol of one pipe's socket transport: forwards to the
// ChildTransport with the pipe's fd number.
class PipeProtocol final : public Protocol {
 public:
  PipeProtocol(std::weak_ptr<ChildTransport> owner, int fd) : owner_(std::move(owner)), fd_(fd) {}
  void data_received(std::string_view data) override;
  bool eof_received() override { return false; }  // closes the pipe
  void connection_lost(std::exception_ptr exc) override;
  void pause_writing() override;
  void resume_writing() override;

 private:
  std::weak_ptr<ChildTransport> owner_;
  int fd_;
};

}  // namespace asyncio::subprocess_internal
