// Subprocess transports that go unclosed (dropped while the child runs or
// still open when the loop closes) are reported, as Python's
// "ResourceWarning: unclosed transport <_UnixSubprocessTransport ...>", with
// the site of the call that started the child; closed ones, finished ones
// and a Process (whose destructor closes) are not. The child's pipes are the
// transport's: not reported on their own.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "subprocess/subprocess.h"

namespace asyncio {
namespace {

void collect_reports(std::vector<std::string>& reports) {
  get_running_loop().set_exception_handler([&reports](EventLoop&, const ExceptionContext& context) {
    reports.push_back(context.message);
  });
}

std::string report(int pid, const char* state, int line) {
  return "unclosed transport <SubprocessTransport pid=" + std::to_string(pid) + " " + state +
         "> opened at " + __FILE__ + ":" + std::to_string(line);
}

// Holds no reference to its transport.
struct Finished : SubprocessProtocol {
  Future<void> lost = create_future<void>(get_running_loop());
  void connection_lost(std::exception_ptr) override { lost.set_result(); }
};

TEST(UnclosedSubprocess, TransportDroppedWhileTheChildRunsIsReportedAtOnce) {
  std::vector<std::string> reports;
  int pid = 0, line = 0;
  run([](std::vector<std::string>& reports, int& pid, int& line) -> Coro<void> {
    collect_reports(reports);
    EventLoop& loop = get_running_loop();
    auto factory = [] { return std::make_shared<Finished>(); };
    std::vector<std::string> argv = {"sleep", "5"};
    {
      auto spawning = subprocess_exec(loop, factory, argv);
      line = __LINE__ - 1;
      auto [transport, protocol] = co_await std::move(spawning);
      pid = transport->get_pid();
    }  // dropped: reported, and the child killed
    EXPECT_EQ(reports.size(), 1u) << "reported when the last owner lets go";
    // Closed, or finished (the child reaped, its pipes closed), then
    // dropped: nothing to report.
    auto [closed, p1] = co_await subprocess_exec(loop, factory, argv);
    closed->close();
    std::vector<std::string> quick = {"true"};
    auto [finished, p2] = co_await subprocess_exec(loop, factory, quick);
    co_await p2->lost;
  }(reports, pid, line));
  ASSERT_EQ(reports.size(), 1u) << ::testing::PrintToString(reports);
  EXPECT_EQ(reports[0], report(pid, "running", line));
}

TEST(UnclosedSubprocess, ProcessStillRunningWhenTheLoopClosesIsReported) {
  std::vector<std::string> reports;
  std::optional<Process> kept;
  int line = 0;
  run([](std::vector<std::string>& reports, std::optional<Process>& kept, int& line) -> Coro<void> {
    collect_reports(reports);
    auto starting = create_subprocess_exec("sleep", "0.3");
    line = __LINE__ - 1;
    kept.emplace(co_await std::move(starting));
    // A Process dropped closes its transport: not reported.
    { Process dropped = co_await create_subprocess_shell("sleep 5"); }
    Process waited = co_await create_subprocess_shell("exit 0");
    EXPECT_EQ(co_await waited.wait(), 0);
  }(reports, kept, line));
  ASSERT_EQ(reports.size(), 1u) << ::testing::PrintToString(reports);
  EXPECT_EQ(reports[0], report(kept->pid(), "running", line));
}

}  // namespace
}  // namespace asyncio
