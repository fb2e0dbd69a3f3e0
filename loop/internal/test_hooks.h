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
};

}  // namespace loop_internal
}  // namespace asyncio
