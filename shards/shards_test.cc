#include "shards/shards.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <map>
#include <memory>
#include <semaphore>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// Waits until cancelled; counts the cancellation.
Coro<void> wait_for_cancel(std::atomic<int>& cancelled) {
  try {
    co_await sleep(1h);
  } catch (const CancelledError&) {
    ++cancelled;
    throw;
  }
}

TEST(RunShardedTest, RunsOneMainPerShardOnDistinctThreadsAndReturnsTheirResults) {
  std::vector<std::thread::id> threads(3);
  std::vector<EventLoop*> loops(3);
  std::vector<size_t> counts = run_sharded(3, [&](Shard& shard) -> Coro<size_t> {
    threads[shard.index()] = std::this_thread::get_id();
    loops[shard.index()] = &get_running_loop();
    EXPECT_EQ(&shard.loop(), &get_running_loop());
    co_await sleep(0s);
    co_return shard.index() * 10 + shard.count();
  });
  EXPECT_EQ(counts, (std::vector<size_t>{3, 13, 23}));
  std::set<std::thread::id> distinct(threads.begin(), threads.end());
  EXPECT_EQ(distinct.size(), 3u);
  EXPECT_EQ(distinct.count(std::this_thread::get_id()), 0u);
  EXPECT_EQ(std::set<EventLoop*>(loops.begin(), loops.end()).size(), 3u);
}

TEST(RunShardedTest, DefaultsToTheAvailableCpusAndCanPinThreads) {
  std::atomic<size_t> ran{0};
  const size_t cpus = available_cpus();
  ShardedOptions options;
  options.pin_threads = true;
  run_sharded(
      [&](Shard& shard) -> Coro<void> {
        EXPECT_EQ(shard.count(), cpus);
        EXPECT_EQ(available_cpus(), 1u);  // pinned to one
        ++ran;
        co_return;
      },
      options);
  EXPECT_EQ(ran.load(), cpus);
  EXPECT_THROW(run_sharded(0, [](Shard&) -> Coro<void> { co_return; }), std::invalid_argument);
}

TEST(RunShardedTest, AFailingMainCancelsTheOthersAndIsRethrown) {
  std::atomic<int> cancelled{0};
  ShardQueue<size_t> running;  // shard 1 waits until the others run
  EXPECT_THROW(
      {
        try {
          run_sharded(3, [&](Shard& shard) -> Coro<void> {
            if (shard.index() != 1) {
              running.put_nowait(shard.index());
              co_await wait_for_cancel(cancelled);
              co_return;
            }
            co_await running.get();
            co_await running.get();
            throw std::logic_error("shard 1 failed");
          });
        } catch (const std::logic_error& e) {
          EXPECT_STREQ(e.what(), "shard 1 failed");
          throw;
        }
      },
      std::logic_error);
  EXPECT_EQ(cancelled.load(), 2);
}

TEST(RunShardedTest, SeveralFailuresMakeAnExceptionGroup) {
  // Both fail in the same step, before either can be cancelled.
  std::latch both_running(2);
  try {
    run_sharded(2, [&](Shard& shard) -> Coro<void> {
      co_await sleep(0s);
      both_running.arrive_and_wait();
      throw std::runtime_error("shard " + std::to_string(shard.index()));
    });
    FAIL() << "no exception";
  } catch (const ExceptionGroup& group) {
    EXPECT_EQ(group.message(), "unhandled errors in run_sharded");
    std::set<std::string> messages;
    for (const std::exception_ptr& e : group.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::runtime_error& error) {
        messages.insert(error.what());
      }
    }
    EXPECT_EQ(messages, (std::set<std::string>{"shard 0", "shard 1"}));
  }
}

TEST(RunShardedTest, RefusesARunningLoop) {
  EXPECT_THROW(run([]() -> Coro<void> {
                 run_sharded(1, [](Shard&) -> Coro<void> { co_return; });
                 co_return;
               }()),
               std::runtime_error);
}

TEST(ShardCallTest, CallRunsOnTheTargetAndReturnsValuesAndExceptions) {
  run_sharded(2, [](Shard& shard) -> Coro<void> {
    if (shard.index() != 0) co_return;  // a finished shard still serves calls
    const std::thread::id here = std::this_thread::get_id();
    auto where = [] { return std::this_thread::get_id(); };
    std::thread::id there = co_await shard.call(1, where);
    EXPECT_NE(there, here);
    EXPECT_EQ(std::this_thread::get_id(), here);  // back on the caller's loop
    EXPECT_EQ(co_await shard.call(0, where), here);
    auto fails = []() -> int { throw std::invalid_argument("bad argument"); };
    try {
      co_await shard.call(1, fails);
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "bad argument");
    }
    auto nothing = [] {};
    co_await shard.call(1, nothing);
    EXPECT_TRUE(co_await testing_util::throws<std::out_of_range>(shard.call(2, nothing)));
    EXPECT_EQ(shard.stats().cross_shard_calls, 3u);
  });
}

TEST(ShardCallTest, SubmitRunsACoroutineOnTheTargetAndReturnsValuesAndExceptions) {
  run_sharded(2, [](Shard& shard) -> Coro<void> {
    if (shard.index() != 0) co_return;
    EventLoop* target = co_await shard.submit(1, []() -> Coro<EventLoop*> {
      co_await sleep(1ms);
      co_return &get_running_loop();
    });
    EXPECT_NE(target, &shard.loop());
    auto moved = co_await shard.submit(
        1, []() -> Coro<std::unique_ptr<int>> { co_return std::make_unique<int>(7); });
    EXPECT_EQ(*moved, 7);
    auto fails = []() -> Coro<void> {
      co_await sleep(0s);
      throw std::out_of_range("remote failure");
    };
    try {
      co_await shard.submit(1, fails);
      ADD_FAILURE() << "no exception";
    } catch (const std::out_of_range& e) {
      EXPECT_STREQ(e.what(), "remote failure");
    }
    auto cancels_itself = []() -> Coro<void> {
      current_task()->cancel();
      co_await sleep(0s);
    };
    EXPECT_TRUE(co_await testing_util::throws<CancelledError>(shard.submit(1, cancels_itself)));
    EXPECT_EQ(co_await shard.submit(0, []() -> Coro<int> { co_return 5; }), 5);
  });
}

TEST(ShardCallTest, CancellingACallerWhileItsCallRunsIsSafe) {
  std::binary_semaphore release_remote{0};
  ShardQueue<int> started;  // owned by shard 0
  run_sharded(2, [&](Shard& shard) -> Coro<void> {
    if (shard.index() != 0) co_return;
    // The function blocks shard 1 until the caller is gone; its result then
    // comes back to a frame that no longer exists.
    auto blocking = [&] {
      started.put_nowait(1);
      release_remote.acquire();
      return std::make_shared<std::string>("late result");
    };
    Task<std::shared_ptr<std::string>> caller = create_task(shard.call(1, blocking));
    co_await started.get();
    caller.cancel();
    EXPECT_TRUE(co_await testing_util::throws<CancelledError>(caller));
    release_remote.release();
    // The loop of shard 1 runs again and serves the next call.
    auto one = [] { return 1; };
    EXPECT_EQ(co_await shard.call(1, one), 1);
  });
}

TEST(ShardCallTest, CancellingASubmitterCancelsTheRemoteTask) {
  ShardQueue<std::string> events;  // owned by shard 0
  run_sharded(2, [&](Shard& shard) -> Coro<void> {
    if (shard.index() != 0) co_return;
    auto remote = [&]() -> Coro<int> {
      events.put_nowait("started");
      try {
        co_await sleep(1h);
      } catch (const CancelledError&) {
        events.put_nowait("remote cancelled");
        throw;
      }
      co_return 0;
    };
    Task<int> caller = create_task(shard.submit(1, remote));
    EXPECT_EQ(co_await events.get(), "started");
    caller.cancel();
    EXPECT_TRUE(co_await testing_util::throws<CancelledError>(caller));
    EXPECT_EQ(co_await events.get(), "remote cancelled");
  });
}

TEST(ShardCallTest, AShardWhoseMainIsDoneStillServesTheOthers) {
  std::atomic<bool> served{false};
  ShardQueue<int> returning;  // owned by shard 1
  run_sharded(2, [&](Shard& shard) -> Coro<void> {
    if (shard.index() == 0) {
      returning.put_nowait(0);
      co_return;
    }
    co_await returning.get();
    auto serve = [&served] { served = true; };
    co_await shard.call(0, serve);
  });
  EXPECT_TRUE(served.load());
}

TEST(ShardQueueTest, DeliversEverythingInOrderPerProducer) {
  constexpr int kPerProducer = 2000;
  ShardQueue<std::pair<size_t, int>> queue;
  run_sharded(4, [&](Shard& shard) -> Coro<void> {
    if (shard.index() != 0) {
      for (int i = 0; i < kPerProducer; ++i) {
        queue.put_nowait({shard.index(), i});
        if (i % 100 == 0) co_await sleep(0s);  // interleave with the consumer
      }
      co_return;
    }
    std::map<size_t, int> next;
    for (int n = 0; n < 3 * kPerProducer; ++n) {
      auto [producer, i] = co_await queue.get();
      EXPECT_EQ(i, next[producer]) << "producer " << producer;
      next[producer] = i + 1;
    }
    EXPECT_EQ(next.size(), 3u);
    EXPECT_TRUE(queue.empty());
    EXPECT_THROW(queue.get_nowait(), QueueEmpty);
  });
}

TEST(ShardQueueTest, OnlyTheOwnerGets) {
  ShardQueue<int> queue;
  ShardQueue<int> owner_ready;  // owned by shard 1
  run_sharded(2, [&](Shard& shard) -> Coro<void> {
    if (shard.index() == 0) {
      queue.put_nowait(1);
      EXPECT_EQ(co_await queue.get(), 1);  // shard 0 owns it now
      owner_ready.put_nowait(0);
      co_return;
    }
    co_await owner_ready.get();
    EXPECT_THROW(queue.get_nowait(), std::runtime_error);
  });
}

// Answers each connection with the index of the shard that accepted it.
Coro<void> answer_shard(Shard& shard, StreamReader reader, StreamWriter writer) {
  std::string line = co_await reader.readline();
  shard.count_request();
  writer.write(std::to_string(shard.index()) + "\n");
  co_await writer.drain();
  writer.close();
  co_await writer.wait_closed();
}

Coro<size_t> one_client(uint16_t port) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  writer.write("hello\n");
  std::string answer = co_await reader.readline();
  writer.close();
  co_await writer.wait_closed();
  co_return std::stoul(answer);
}

Coro<void> clients(uint16_t port, int total, int concurrency, std::vector<size_t>& per_shard) {
  int started = 0;
  while (started < total) {
    std::vector<Task<size_t>> batch;
    for (int i = 0; i < concurrency && started < total; ++i, ++started) {
      batch.push_back(create_task(one_client(port)));
    }
    for (Task<size_t>& t : batch) ++per_shard.at(co_await t);
  }
}

TEST(ShardServerTest, AThousandConnectionsAreEachAcceptedOnceAndSpreadOverBothShards) {
  ShardQueue<uint16_t> port_for_shard1;  // owned by shard 1
  ShardQueue<int> shard1_listening;      // owned by shard 0
  ShardQueue<int> done;                  // owned by shard 1
  std::vector<ShardStats> stats;
  std::vector<size_t> per_shard(2);
  run_sharded(2, [&](Shard& shard) -> Coro<void> {
    ClientConnected handler = [&shard](StreamReader r, StreamWriter w) {
      return answer_shard(shard, std::move(r), std::move(w));
    };
    if (shard.index() == 1) {
      uint16_t port = co_await port_for_shard1.get();
      Server server = co_await shard.start_server(handler, "127.0.0.1", port);
      EXPECT_TRUE(server.is_serving());
      shard1_listening.put_nowait(1);
      co_await done.get();
      co_return;
    }
    Server server = co_await shard.start_server(handler, "127.0.0.1", 0);
    const uint16_t port = testing_util::port_of(server);
    port_for_shard1.put_nowait(port);
    co_await shard1_listening.get();
    co_await clients(port, 1000, 50, per_shard);
    stats = shard.all_stats();
    done.put_nowait(1);
  });
  EXPECT_EQ(per_shard[0] + per_shard[1], 1000u);
  EXPECT_GT(per_shard[0], 0u);
  EXPECT_GT(per_shard[1], 0u);
  ASSERT_EQ(stats.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(stats[i].connections_accepted, per_shard[i]) << "shard " << i;
    EXPECT_EQ(stats[i].requests, per_shard[i]) << "shard " << i;
  }
  std::printf("1000 connections: shard 0 got %zu, shard 1 got %zu\n", per_shard[0], per_shard[1]);
}

// A protocol server on each shard; when the shards are cancelled, each closes
// its listener and its clients.
TEST(ShardServerTest, CancellingTheShardsClosesTheirServersAndClients) {
  ShardQueue<uint16_t> port_for_shard1;
  ShardQueue<int> ready;  // owned by shard 0
  std::atomic<int> lost{0};
  ShardQueue<int> made;  // owned by shard 0: one item per accepted connection
  struct Idle : Protocol {
    std::atomic<int>* lost;
    ShardQueue<int>* made;
    Idle(std::atomic<int>* l, ShardQueue<int>* m) : lost(l), made(m) {}
    void connection_made(std::shared_ptr<BaseTransport>) override { made->put_nowait(1); }
    // A client closing its end leaves this one open: only its server closes it.
    bool eof_received() override { return true; }
    void connection_lost(std::exception_ptr) override { ++*lost; }
  };
  EXPECT_THROW(run_sharded(2,
                           [&](Shard& shard) -> Coro<void> {
                             ProtocolFactory factory = [&lost, &made] {
                               return std::make_shared<Idle>(&lost, &made);
                             };
                             uint16_t port = 0;
                             if (shard.index() == 1) port = co_await port_for_shard1.get();
                             Server server =
                                 co_await shard.create_server(factory, "127.0.0.1", port);
                             if (shard.index() == 1) {
                               ready.put_nowait(1);
                               co_await sleep(1h);
                             }
                             port = testing_util::port_of(server);
                             port_for_shard1.put_nowait(port);
                             co_await ready.get();
                             // Idle clients, which the servers must close.
                             std::vector<std::pair<StreamReader, StreamWriter>> conns;
                             // The clients close their ends as the frame goes:
                             // else they would be reported unclosed.
                             struct CloseClients {
                               std::vector<std::pair<StreamReader, StreamWriter>>& conns;
                               ~CloseClients() {
                                 for (auto& conn : conns) conn.second.close();
                               }
                             } close_clients{conns};
                             for (int i = 0; i < 20; ++i) {
                               conns.push_back(co_await open_connection("127.0.0.1", port));
                             }
                             for (int i = 0; i < 20; ++i) co_await made.get();
                             uint64_t accepted = 0, open = 0;
                             for (const ShardStats& s : shard.all_stats()) {
                               accepted += s.connections_accepted;
                               open += s.connections_open;
                             }
                             EXPECT_EQ(accepted, 20u);
                             EXPECT_EQ(open, 20u);
                             throw std::runtime_error("stop");
                           }),
               std::runtime_error);
  EXPECT_EQ(lost.load(), 20);
}

bool default_disposition(int sig) {
  struct sigaction now {};
  return ::sigaction(sig, nullptr, &now) == 0 && now.sa_handler == SIG_DFL;
}

// Shard 0 sends `sig` to this process once every other shard runs.
Coro<void> signal_when_running(Shard& shard, ShardQueue<int>& running, int sig) {
  if (shard.index() != 0) {
    running.put_nowait(1);
    co_return;
  }
  for (size_t i = 1; i < shard.count(); ++i) co_await running.get();
  ::kill(::getpid(), sig);
}

TEST(ShardSignalTest, SigintCancelsEveryShardAndRaisesKeyboardInterrupt) {
  if (!default_disposition(SIGINT)) GTEST_SKIP() << "SIGINT is not at its default disposition";
  std::atomic<int> cancelled{0};
  ShardQueue<int> running;  // owned by shard 0
  EXPECT_THROW(run_sharded(3,
                           [&](Shard& shard) -> Coro<void> {
                             co_await signal_when_running(shard, running, SIGINT);
                             co_await wait_for_cancel(cancelled);
                           }),
               KeyboardInterrupt);
  EXPECT_EQ(cancelled.load(), 3);
  EXPECT_TRUE(default_disposition(SIGINT));  // put back
}

TEST(ShardSignalTest, SigtermStopsEveryShardAndReturns) {
  if (!default_disposition(SIGTERM)) GTEST_SKIP() << "SIGTERM is not at its default disposition";
  std::atomic<int> cancelled{0};
  ShardQueue<int> running;
  run_sharded(2, [&](Shard& shard) -> Coro<void> {
    co_await signal_when_running(shard, running, SIGTERM);
    co_await wait_for_cancel(cancelled);
  });
  EXPECT_EQ(cancelled.load(), 2);
}

TEST(ShardSignalTest, ASecondSigintStopsWaitingForTheMains) {
  if (!default_disposition(SIGINT)) GTEST_SKIP() << "SIGINT is not at its default disposition";
  ShardQueue<int> running;   // owned by shard 0
  ShardQueue<int> survived;  // owned by shard 0: shard 1 swallowed the first SIGINT
  std::atomic<int> cancelled_again{0};
  EXPECT_THROW(run_sharded(2,
                           [&](Shard& shard) -> Coro<void> {
                             co_await signal_when_running(shard, running, SIGINT);
                             bool swallowed = false;
                             try {
                               co_await sleep(1h);
                             } catch (const CancelledError&) {
                               swallowed = true;  // and carries on, as a stubborn main would
                             }
                             EXPECT_TRUE(swallowed);
                             if (shard.index() == 0) {
                               co_await survived.get();
                               ::kill(::getpid(), SIGINT);
                             } else {
                               survived.put_nowait(1);
                             }
                             // The second SIGINT leaves this to the shard's shutdown,
                             // which cancels it.
                             co_await wait_for_cancel(cancelled_again);
                           }),
               KeyboardInterrupt);
  EXPECT_EQ(cancelled_again.load(), 2);
}

TEST(ShardSignalTest, AMainThatSwallowsTheInterruptReturnsNormally) {
  if (!default_disposition(SIGINT)) GTEST_SKIP() << "SIGINT is not at its default disposition";
  ShardQueue<int> running;
  std::vector<int> results = run_sharded(2, [&](Shard& shard) -> Coro<int> {
    co_await signal_when_running(shard, running, SIGINT);
    try {
      co_await sleep(1h);
    } catch (const CancelledError&) {
      co_return 1;
    }
    co_return 0;
  });
  EXPECT_EQ(results, (std::vector<int>{1, 1}));
}

}  // namespace
}  // namespace asyncio
