// The loop's timer queue: a 4-ary min-heap of (when, node) entries.
//
// Four children per node halve the depth of a binary heap, and the four
// 16-byte children of an entry share one or two cache lines, so a pop of a
// large heap misses the cache about half as often. Entries carry the
// deadline, so ordering never touches a node (a cache miss per node)
// except to break a tie between equal deadlines by scheduling order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace asyncio::loop_internal {

// `Node` has a `uint64_t timer_seq`: the order in which timers were
// scheduled, which decides between equal deadlines.
template <class Node>
class TimerHeap {
 public:
  struct Entry {
    double when;
    Node* node;
  };

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  const Entry& front() const { return entries_.front(); }
  // In heap order, not deadline order.
  const std::vector<Entry>& entries() const { return entries_; }

  void push(Entry entry) {
    size_t hole = entries_.size();
    entries_.push_back(entry);
    while (hole > 0) {
      const size_t parent = (hole - 1) / kArity;
      if (!earlier(entry, entries_[parent])) break;
      entries_[hole] = entries_[parent];
      hole = parent;
    }
    entries_[hole] = entry;
  }

  void pop_front() {
    const Entry last = entries_.back();
    entries_.pop_back();
    if (!entries_.empty()) sift_down(0, last);
  }

  // Removes the entries due before `end` and appends their nodes to `out`,
  // earliest first (equal deadlines in scheduling order).
  //
  // One at a time while few are due; once as many have been popped as an
  // eighth of what is left, the rest of a burst goes in one pass instead:
  // partition, sort the due part, rebuild the heap (linear, sequential
  // memory) rather than a pop with its cache misses per timer.
  void pop_due(double end, std::vector<Node*>& out) {
    size_t popped = 0;
    while (!entries_.empty() && entries_.front().when < end) {
      if (popped >= kMinPopsBeforeBulk && popped * kBulkRatio >= entries_.size()) {
        pop_due_in_bulk(end, out);
        return;
      }
      out.push_back(entries_.front().node);
      pop_front();
      ++popped;
    }
  }

  // Removes the entries for which `drop(entry)` is true and restores the
  // heap in linear time.
  template <class Drop>
  void remove_if(Drop drop) {
    size_t kept = 0;
    for (const Entry& e : entries_) {
      if (!drop(e)) entries_[kept++] = e;
    }
    entries_.resize(kept);
    heapify();
  }

  // Moves every entry into `out` (what it held is dropped), leaving the
  // heap empty.
  void take_all(std::vector<Entry>& out) {
    out.clear();
    out.swap(entries_);
  }

  // Earliest deadline first; equal deadlines in scheduling order.
  static bool earlier(const Entry& a, const Entry& b) {
    return a.when < b.when || (a.when == b.when && a.node->timer_seq < b.node->timer_seq);
  }

 private:
  static constexpr size_t kArity = 4;
  static constexpr size_t kMinPopsBeforeBulk = 64;
  static constexpr size_t kBulkRatio = 8;

  void pop_due_in_bulk(double end, std::vector<Node*>& out) {
    auto due_end = std::partition(entries_.begin(), entries_.end(),
                                  [end](const Entry& e) { return e.when < end; });
    // A lambda, not &earlier: std::sort inlines it.
    std::sort(entries_.begin(), due_end,
              [](const Entry& a, const Entry& b) { return earlier(a, b); });
    for (auto it = entries_.begin(); it != due_end; ++it) out.push_back(it->node);
    entries_.erase(entries_.begin(), due_end);
    heapify();
  }

  void heapify() {
    const size_t n = entries_.size();
    if (n < 2) return;
    for (size_t i = (n - 2) / kArity + 1; i-- > 0;) sift_down(i, entries_[i]);
  }

  // Moves the hole at `hole` down to where `entry` belongs and puts it there.
  void sift_down(size_t hole, Entry entry) {
    const size_t n = entries_.size();
    while (true) {
      const size_t first = hole * kArity + 1;
      if (first >= n) break;
      const size_t end = first + kArity < n ? first + kArity : n;
      size_t best = first;
      for (size_t child = first + 1; child < end; ++child) {
        if (earlier(entries_[child], entries_[best])) best = child;
      }
      if (!earlier(entries_[best], entry)) break;
      entries_[hole] = entries_[best];
      hole = best;
    }
    entries_[hole] = entry;
  }

  std::vector<Entry> entries_;
};

}  // namespace asyncio::loop_internal
