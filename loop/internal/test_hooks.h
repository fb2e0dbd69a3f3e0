// Hooks for deterministic tests of races in the loop: internal API, for tests
// only. Each is called, when set, at one fixed point of the loop's code.
#pragma once

#include <atomic>

namespace asyncio {
namespace loop_internal {

struct TestHooks {
  using Hook = void (*)();
  // In call_soon_threadsafe, after the closed check and before the node is
  // pushed.
  static std::atomic<Hook> threadsafe_post_checked;
  // On the thread closing or destroying a loop, each time round its wait for
  // the threads inside call_soon_threadsafe.
  static std::atomic<Hook> waiting_for_posters;
  // On the loop thread about to sleep, after it said so and looked at the
  // queue of call_soon_threadsafe one last time, before the syscall.
  static std::atomic<Hook> loop_going_to_sleep;
};

}  // namespace loop_internal
}  // namespace asyncio
