#include "contextvars/contextvars.h"

#include <string>

#include "gtest/gtest.h"

namespace asyncio {
namespace {

ContextVar<std::string> request_id("request_id");
ContextVar<int> retries("retries", 3);

TEST(ContextVarTest, GetWithoutValueRaisesLookupErrorOrGivesTheDefault) {
  Context empty;
  empty.run([] {
    EXPECT_THROW(request_id.get(), LookupError);
    EXPECT_EQ(request_id.get("none"), "none");
    EXPECT_EQ(retries.get(), 3);
    EXPECT_EQ(retries.get(7), 7);  // the argument wins over the default, as in Python
  });
}

TEST(ContextVarTest, SetThenResetRestoresThePreviousValue) {
  Context().run([] {
    Token<std::string> first = request_id.set("a");
    EXPECT_FALSE(first.old_value().has_value());
    Token<std::string> second = request_id.set("b");
    EXPECT_EQ(second.old_value(), "a");
    EXPECT_EQ(request_id.get(), "b");
    request_id.reset(second);
    EXPECT_EQ(request_id.get(), "a");
    request_id.reset(first);
    EXPECT_THROW(request_id.get(), LookupError);
  });
}

TEST(ContextVarTest, ATokenIsUsedOnceAndOnlyInItsContextAndVariable) {
  Context().run([] {
    Token<std::string> token = request_id.set("a");
    request_id.reset(token);
    EXPECT_THROW(request_id.reset(token), std::logic_error);  // RuntimeError
  });
  Token<std::string> outer = Context().run([] { return request_id.set("x"); });
  Context().run([&] {
    request_id.set("y");
    EXPECT_THROW(request_id.reset(outer), std::invalid_argument);  // another context
  });
  ContextVar<std::string> other("other");
  Context().run([&] {
    Token<std::string> token = request_id.set("a");
    EXPECT_THROW(other.reset(token), std::invalid_argument);  // another variable
  });
}

TEST(ContextTest, RunMakesSetsVisibleInThatContextOnly) {
  Context ctx;
  ctx.run([] { request_id.set("inside"); });
  EXPECT_EQ(request_id.get_in(ctx), "inside");
  EXPECT_TRUE(ctx.contains(request_id));
  EXPECT_EQ(ctx.size(), 1u);
  Context other;
  EXPECT_FALSE(other.contains(request_id));
  EXPECT_THROW(request_id.get_in(other), LookupError);
  // The same context entered again keeps its values.
  EXPECT_EQ(ctx.run([] { return request_id.get(); }), "inside");
}

TEST(ContextTest, CopyContextSnapshotsTheCurrentValues) {
  Context ctx;
  ctx.run([&] {
    request_id.set("before");
    Context snapshot = copy_context();
    request_id.set("after");
    EXPECT_EQ(request_id.get_in(snapshot), "before");
    // Changes inside the copy stay there.
    snapshot.run([] { request_id.set("in copy"); });
    EXPECT_EQ(request_id.get(), "after");
    EXPECT_EQ(request_id.get_in(snapshot), "in copy");
    EXPECT_FALSE(snapshot == ctx);
    EXPECT_EQ(snapshot.copy().size(), 1u);
  });
}

TEST(ContextTest, AnEnteredContextCannotBeEnteredAgain) {
  Context ctx;
  ctx.run([&] { EXPECT_THROW(ctx.run([] {}), std::logic_error); });
  // It can be entered again once left, even after an exception.
  EXPECT_THROW(ctx.run([]() -> int { throw std::runtime_error("boom"); }), std::runtime_error);
  EXPECT_NO_THROW(ctx.run([] {}));
}

TEST(ContextTest, NestedRunsRestoreTheOuterContext) {
  Context outer;
  Context inner;
  outer.run([&] {
    request_id.set("outer");
    inner.run([] {
      EXPECT_THROW(request_id.get(), LookupError);
      request_id.set("inner");
    });
    EXPECT_EQ(request_id.get(), "outer");
  });
  EXPECT_EQ(request_id.get_in(inner), "inner");
}

TEST(ContextTest, HandlesToOneContextShareIt) {
  Context ctx;
  Context same = ctx;
  EXPECT_TRUE(same == ctx);
  same.run([] { retries.set(9); });
  EXPECT_EQ(retries.get_in(ctx), 9);
}

}  // namespace
}  // namespace asyncio
