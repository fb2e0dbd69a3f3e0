#include "loop/internal/timer_heap.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace asyncio::loop_internal {
namespace {

struct FakeNode {
  uint64_t timer_seq = 0;
  double when = 0;
};

using Heap = TimerHeap<FakeNode>;

// `count` nodes with deadlines drawn from `distinct` values, so that many tie.
std::vector<FakeNode> make_nodes(size_t count, int distinct, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, distinct - 1);
  std::vector<FakeNode> nodes(count);
  for (size_t i = 0; i < count; ++i) nodes[i] = {i, static_cast<double>(pick(rng))};
  return nodes;
}

// The order the loop must fire them in: by deadline, ties by scheduling.
std::vector<FakeNode*> expected_order(std::vector<FakeNode>& nodes, double end) {
  std::vector<FakeNode*> due;
  for (FakeNode& n : nodes) {
    if (n.when < end) due.push_back(&n);
  }
  // Ties by timer_seq, the scheduling order. Not std::stable_sort: with
  // libstdc++ 12 it fails Clang's -Werror (deprecated get_temporary_buffer).
  std::sort(due.begin(), due.end(), [](const FakeNode* a, const FakeNode* b) {
    return a->when < b->when || (a->when == b->when && a->timer_seq < b->timer_seq);
  });
  return due;
}

Heap heap_of(std::vector<FakeNode>& nodes) {
  Heap heap;
  for (FakeNode& n : nodes) heap.push({n.when, &n});
  return heap;
}

TEST(TimerHeapTest, PopsOneAtATimeInDeadlineThenSchedulingOrder) {
  auto nodes = make_nodes(1000, 50, 1);
  Heap heap = heap_of(nodes);
  std::vector<FakeNode*> popped;
  while (!heap.empty()) {
    popped.push_back(heap.front().node);
    heap.pop_front();
  }
  EXPECT_EQ(popped, expected_order(nodes, 50));
}

TEST(TimerHeapTest, PopDueOfABurstKeepsTheOrderAndLeavesAValidHeap) {
  // Most entries due: pop_due switches to its one-pass path.
  auto nodes = make_nodes(5000, 100, 2);
  Heap heap = heap_of(nodes);
  std::vector<FakeNode*> due;
  heap.pop_due(90, due);
  EXPECT_EQ(due, expected_order(nodes, 90));
  // What is left still pops in order.
  std::vector<FakeNode*> rest;
  heap.pop_due(1000, rest);
  std::vector<FakeNode*> expected_rest;
  for (FakeNode* n : expected_order(nodes, 1000)) {
    if (n->when >= 90) expected_rest.push_back(n);
  }
  EXPECT_EQ(rest, expected_rest);
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeapTest, PopDueOfAFewTakesOnlyThoseDue) {
  auto nodes = make_nodes(5000, 1000, 3);
  Heap heap = heap_of(nodes);
  std::vector<FakeNode*> due;
  heap.pop_due(3, due);  // a handful: popped one at a time
  EXPECT_EQ(due, expected_order(nodes, 3));
  EXPECT_EQ(heap.size(), nodes.size() - due.size());
  EXPECT_GE(heap.front().when, 3);
}

TEST(TimerHeapTest, RemoveIfKeepsTheOthersInOrder) {
  auto nodes = make_nodes(3000, 200, 4);
  Heap heap = heap_of(nodes);
  heap.remove_if([](const Heap::Entry& e) { return e.node->timer_seq % 3 != 0; });
  EXPECT_EQ(heap.size(), 1000u);
  std::vector<FakeNode*> popped;
  heap.pop_due(200, popped);
  std::vector<FakeNode*> expected;
  for (FakeNode* n : expected_order(nodes, 200)) {
    if (n->timer_seq % 3 == 0) expected.push_back(n);
  }
  EXPECT_EQ(popped, expected);
}

TEST(TimerHeapTest, BurstOrderAcrossSignsZerosAndInfinities) {
  // The one-pass path sorts on the deadline's bits: negative deadlines,
  // -0.0 against +0.0 (equal: scheduling order) and infinities must still
  // come out as the doubles compare.
  const double inf = std::numeric_limits<double>::infinity();
  const double values[] = {-inf, -2.5, -1e-300, -0.0, 0.0, 1e-300, 3.0, 1e300, inf};
  std::vector<FakeNode> nodes(2000);
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i] = {i, values[(i * 5) % (sizeof(values) / sizeof(values[0]))]};
  }
  Heap heap = heap_of(nodes);
  std::vector<FakeNode*> popped;
  heap.pop_due(inf, popped);  // all but the infinite ones
  EXPECT_EQ(popped, expected_order(nodes, inf));
  EXPECT_EQ(heap.size(), nodes.size() - popped.size());
}

TEST(TimerHeapTest, DeadlinesPushedInOrderComeOffTheFrontInOrder) {
  // As a loop scheduling timers with one delay pushes them: deadlines never
  // decrease, with runs of equal ones.
  std::vector<FakeNode> nodes(4000);
  for (size_t i = 0; i < nodes.size(); ++i) nodes[i] = {i, static_cast<double>(i / 7)};
  Heap heap = heap_of(nodes);
  EXPECT_TRUE(heap.sorted());
  std::vector<FakeNode*> due;
  heap.pop_due(400, due);  // most of them: the prefix is taken as it is
  EXPECT_EQ(due, expected_order(nodes, 400));
  EXPECT_TRUE(heap.sorted());
  // A later one out of order ends the sorted run; the order still holds.
  FakeNode early{nodes.size(), 450.5};
  FakeNode tie{nodes.size() + 1, 571};  // the last deadline: a tie, after it
  heap.push({tie.when, &tie});
  EXPECT_TRUE(heap.sorted());
  heap.push({early.when, &early});
  EXPECT_FALSE(heap.sorted());
  std::vector<FakeNode*> rest;
  heap.pop_due(1e9, rest);
  std::vector<FakeNode*> expected;
  for (FakeNode* n : expected_order(nodes, 1e9)) {
    if (n->when >= 400) expected.push_back(n);
  }
  expected.insert(std::find_if(expected.begin(), expected.end(),
                               [](const FakeNode* n) { return n->when > 450.5; }),
                  &early);
  expected.insert(std::find_if(expected.begin(), expected.end(),
                               [](const FakeNode* n) { return n->when > 571; }),
                  &tie);
  EXPECT_EQ(rest, expected);
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeapTest, AFewDueOfASortedHeapArePoppedAndTheRestStaysInOrder) {
  std::vector<FakeNode> nodes(1000);
  for (size_t i = 0; i < nodes.size(); ++i) nodes[i] = {i, static_cast<double>(i)};
  Heap heap = heap_of(nodes);
  std::vector<FakeNode*> due;
  heap.pop_due(3, due);  // too few to move the rest down for: popped
  EXPECT_EQ(due, expected_order(nodes, 3));
  std::vector<FakeNode*> rest;
  heap.pop_due(1e9, rest);
  std::vector<FakeNode*> expected = expected_order(nodes, 1e9);
  expected.erase(expected.begin(), expected.begin() + 3);
  EXPECT_EQ(rest, expected);
}

}  // namespace
}  // namespace asyncio::loop_internal
