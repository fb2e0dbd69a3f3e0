#include "loop/posix.h"

#include <fcntl.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>
#include <utility>

#include "gtest/gtest.h"

namespace asyncio::posix {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST(UniqueFdTest, ClosesOnDestructionAndMovesOwnership) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    UniqueFd moved = std::move(fd);
    EXPECT_FALSE(fd);
    EXPECT_EQ(moved.get(), raw);
    EXPECT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFdTest, ReleaseKeepsTheDescriptorOpen) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  { EXPECT_EQ(UniqueFd(raw).release(), raw); }
  EXPECT_TRUE(is_open(raw));
  UniqueFd fd(raw);
  fd.reset();
  EXPECT_FALSE(is_open(raw));
}

TEST(PosixTest, ThrowErrnoUsesTheGenericCategory) {
  try {
    throw_errno("open", ENOENT);
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::error_code(ENOENT, std::generic_category()));
    EXPECT_EQ(std::string(e.what()).rfind("open: ", 0), 0u);
  }
}

TEST(PosixTest, SetNonblocking) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  set_nonblocking(read_end.get());
  EXPECT_TRUE(::fcntl(read_end.get(), F_GETFL) & O_NONBLOCK);
  char byte;
  EXPECT_LT(::read(read_end.get(), &byte, 1), 0);
  EXPECT_TRUE(would_block(errno));
  EXPECT_THROW(set_nonblocking(-1), std::system_error);
}

TEST(PosixTest, DescribeExceptionNamesTheType) {
  EXPECT_EQ(describe_exception(std::make_exception_ptr(std::runtime_error("boom"))),
            "std::runtime_error: boom");
  EXPECT_EQ(describe_exception(std::make_exception_ptr(42)), "unknown exception");
}

TEST(PosixTest, WriteBufferLimitsDefaults) {
  using Limits = std::pair<size_t, size_t>;
  EXPECT_EQ(write_buffer_limits({}, {}), (Limits{16 * 1024, 64 * 1024}));
  EXPECT_EQ(write_buffer_limits(1000, {}), (Limits{250, 1000}));
  EXPECT_EQ(write_buffer_limits({}, 100), (Limits{100, 400}));
  EXPECT_EQ(write_buffer_limits(0, {}), (Limits{0, 0}));
  EXPECT_THROW(write_buffer_limits(10, 20), std::invalid_argument);
}

}  // namespace
}  // namespace asyncio::posix
