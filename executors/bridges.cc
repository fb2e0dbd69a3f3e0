#include "executors/bridges.h"

#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "executors/thread_pool.h"

namespace asyncio::executors_internal {

namespace {

int registry_slot() {
  static const int slot = EventLoop::new_extension_slot();
  return slot;
}

}  // namespace

std::exception_ptr loop_closed_error() {
  return std::make_exception_ptr(std::runtime_error("Event loop is closed"));
}

bool LoopRef::post(absl::AnyInvocable<void()> cb) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (loop_ != nullptr) {
      try {
        loop_->call_soon_threadsafe(std::move(cb));
        return true;
      } catch (const std::runtime_error&) {
        // Closed: fall through and drop `cb` outside the lock.
      }
    }
  }
  cb = nullptr;
  return false;
}

void LoopRef::detach() {
  std::lock_guard<std::mutex> lock(mu_);
  loop_ = nullptr;
}

BridgeRegistry& BridgeRegistry::of(EventLoop& loop) {
  const int slot = registry_slot();
  if (auto* existing = static_cast<BridgeRegistry*>(loop.extension(slot))) return *existing;
  auto* registry = new BridgeRegistry(loop);
  loop.set_extension(slot, std::unique_ptr<LoopExtension>(registry));
  if (loop.is_closed()) registry->ref_->detach();
  return *registry;
}

void BridgeRegistry::add(LoopLink& link) {
  if (link.registry_ != nullptr) return;
  link.self_ = link.shared_from_this();
  link.registry_ = this;
  link.prev_ = nullptr;
  link.next_ = head_;
  if (head_ != nullptr) head_->prev_ = &link;
  head_ = &link;
}

void BridgeRegistry::remove(LoopLink& link) noexcept {
  BridgeRegistry* registry = link.registry_;
  if (registry == nullptr) return;
  if (link.prev_ != nullptr) {
    link.prev_->next_ = link.next_;
  } else {
    registry->head_ = link.next_;
  }
  if (link.next_ != nullptr) link.next_->prev_ = link.prev_;
  link.prev_ = link.next_ = nullptr;
  link.registry_ = nullptr;
  std::shared_ptr<LoopLink> self = std::move(link.self_);  // may be the last reference
}

void BridgeRegistry::close_all() noexcept {
  ref_->detach();
  // Unregister everything first: failing a future runs callbacks, which may
  // come back here.
  std::vector<std::shared_ptr<LoopLink>> links;
  while (head_ != nullptr) {
    LoopLink* link = head_;
    head_ = link->next_;
    link->prev_ = link->next_ = nullptr;
    link->registry_ = nullptr;
    links.push_back(std::move(link->self_));
  }
  for (auto& link : links) link->loop_closed();
}

void BridgeRegistry::on_close() noexcept { close_all(); }

BridgeRegistry::~BridgeRegistry() { close_all(); }

Executor& default_executor(EventLoop& loop) {
  if (loop.executor_shutdown_called())
    throw std::runtime_error("Executor shutdown has been called");
  if (!loop.default_executor()) {
    loop.set_default_executor(std::make_shared<concurrent::ThreadPoolExecutor>());
  }
  return *loop.default_executor();
}

}  // namespace asyncio::executors_internal
