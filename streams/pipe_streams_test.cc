// open_read_pipe and open_write_pipe: streams over pipes, a FIFO and a
// child process's standard input and output.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

#include "gtest/gtest.h"
#include "loop/posix.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"

extern char** environ;

namespace asyncio {
namespace {

using posix::UniqueFd;
using testing_util::open_fd_count;
using testing_util::PipePair;

TEST(PipeStreamsTest, LinesGoThroughAPipe) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    PipePair pipe;
    StreamReader reader = co_await open_read_pipe(pipe.read_end.release());
    StreamWriter writer = co_await open_write_pipe(pipe.write_end.release());
    EXPECT_GE(std::any_cast<int>(writer.get_extra_info("pipe")), 0);
    writer.write("first line\n");
    writer.write("second ");
    writer.write("line\n");
    co_await writer.drain();
    EXPECT_EQ(co_await reader.readline(), "first line\n");
    EXPECT_EQ(co_await reader.readline(), "second line\n");
    writer.write("tail");
    writer.close();
    co_await writer.wait_closed();
    EXPECT_EQ(co_await reader.read(), "tail");
    EXPECT_TRUE(reader.at_eof());
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(PipeStreamsTest, DrainWaitsForASlowReader) {
  run([]() -> Coro<void> {
    PipePair pipe;
    StreamReader reader = co_await open_read_pipe(pipe.read_end.release());
    StreamWriter writer = co_await open_write_pipe(pipe.write_end.release());
    const std::string chunk(256 * 1024, 'd');
    writer.write(chunk);
    EXPECT_GT(writer.transport().get_write_buffer_size(), 0u);
    // drain() returns only once the reader has taken enough.
    Task<void> draining = create_task(writer.drain());
    std::string got = co_await reader.readexactly(chunk.size());
    co_await draining;
    EXPECT_EQ(got, chunk);
    writer.close();
    co_await writer.wait_closed();
  }());
}

TEST(PipeStreamsTest, WaitClosedReportsTheReaderGoingAway) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    PipePair pipe;
    StreamWriter writer = co_await open_write_pipe(pipe.write_end.release());
    writer.write(std::string(1 << 20, 'b'));
    pipe.read_end.reset();
    int code = 0;
    try {
      co_await writer.wait_closed();
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    EXPECT_EQ(code, EPIPE);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(PipeStreamsTest, FifoAsStreams) {
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    const std::string path = dir.file("fifo");
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0);
    const int read_fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    const int write_fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    StreamReader reader = co_await open_read_pipe(read_fd);
    StreamWriter writer = co_await open_write_pipe(write_fd);
    writer.write("fifo\n");
    writer.close();
    EXPECT_EQ(co_await reader.readline(), "fifo\n");
    EXPECT_EQ(co_await reader.readline(), "");
  }());
}

TEST(PipeStreamsTest, RegularFileIsRefused) {
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    UniqueFd file(::open(dir.file("plain").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(open_read_pipe(file.get())));
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(open_write_pipe(file.get())));
  }());
}

// A child's standard input and output as streams: the parent writes a line
// to its stdin and reads the answer from its stdout.
TEST(PipeStreamsTest, ChildProcessStandardStreams) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    PipePair to_child, from_child;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child.read_end.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, from_child.write_end.get(), 1);
    char sh[] = "/bin/sh", dash_c[] = "-c", script[] = "read line; echo \"got: $line\"";
    char* argv[] = {sh, dash_c, script, nullptr};
    pid_t pid = -1;
    EXPECT_EQ(::posix_spawn(&pid, "/bin/sh", &actions, nullptr, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    to_child.read_end.reset();  // the child's ends
    from_child.write_end.reset();
    StreamWriter to = co_await open_write_pipe(to_child.write_end.release());
    StreamReader from = co_await open_read_pipe(from_child.read_end.release());
    to.write("hello child\n");
    to.close();
    co_await to.wait_closed();
    EXPECT_EQ(co_await from.readline(), "got: hello child\n");
    EXPECT_EQ(co_await from.read(), "");  // EOF: the child has exited
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

}  // namespace
}  // namespace asyncio
