// The loop's timer queue: a 4-ary min-heap of (when, node) entries.
//
// Four children per node halve the depth of a binary heap, and the four
// 16-byte children of an entry share one or two cache lines, so a pop of a
// large heap misses the cache about half as often. Entries carry the
// deadline, so ordering never touches a node (a cache miss per node)
// except to break a tie between equal deadlines by scheduling order.
//
// Timers scheduled in a loop with one delay arrive in deadline order. While
// they do, the array stays sorted (a sorted array is a heap: each push lands
// at the end), and a burst of them comes off the front as it is, with no
// sort and no rebuild.
#pragma once

#include <algorithm>
#include <bit>
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
    if (entries_.empty() || (sorted_ && !earlier(entry, entries_.back()))) {
      // In order: the array stays sorted, and so a heap.
      sorted_ = true;
      entries_.push_back(entry);
      return;
    }
    sorted_ = false;
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
    if (!entries_.empty()) {
      sift_down(0, last);
      sorted_ = entries_.size() == 1;
    }
  }

  // Removes the entries due before `end` and appends their nodes to `out`,
  // earliest first (equal deadlines in scheduling order).
  //
  // One at a time while few are due; once as many have been popped as an
  // eighth of what is left, the rest of a burst goes in one pass instead:
  // partition, sort the due part, rebuild the heap (linear, sequential
  // memory) rather than a pop with its cache misses per timer.
  void pop_due(double end, std::vector<Node*>& out) {
    if (sorted_ && pop_sorted_prefix(end, out)) return;
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
  // heap in linear time (a sorted array stays sorted: the order of what is
  // kept does not change, and heapify moves nothing in it).
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
    sorted_ = true;
  }

  // Whether the entries are in firing order (for tests).
  bool sorted() const { return sorted_; }

  // Earliest deadline first; equal deadlines in scheduling order.
  static bool earlier(const Entry& a, const Entry& b) {
    return a.when < b.when || (a.when == b.when && a.node->timer_seq < b.node->timer_seq);
  }

 private:
  static constexpr size_t kArity = 4;
  static constexpr size_t kMinPopsBeforeBulk = 64;
  static constexpr size_t kBulkRatio = 8;
  static constexpr size_t kMinRadixSort = 256;

  // With the entries in firing order, the due ones are a prefix: taken as it
  // is when it is a large enough part of the heap that moving the rest down
  // costs less than popping them one by one (which gives up the order).
  bool pop_sorted_prefix(double end, std::vector<Node*>& out) {
    const size_t n = entries_.size();
    size_t due = 0;
    while (due < n && entries_[due].when < end) ++due;
    if (due == 0 || (due < n && (due < kMinPopsBeforeBulk || due * kBulkRatio < n))) return false;
    for (size_t i = 0; i < due; ++i) out.push_back(entries_[i].node);
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(due));
    return true;
  }

  void pop_due_in_bulk(double end, std::vector<Node*>& out) {
    auto due_end = std::partition(entries_.begin(), entries_.end(),
                                  [end](const Entry& e) { return e.when < end; });
    sort_by_deadline(&*entries_.begin(), static_cast<size_t>(due_end - entries_.begin()));
    for (auto it = entries_.begin(); it != due_end; ++it) out.push_back(it->node);
    entries_.erase(entries_.begin(), due_end);
    heapify();
  }

  // Sorts `n` entries into firing order. A radix sort on the deadline's
  // bits (only the bytes that differ: a few, for a burst of timers) costs
  // a fifth of a comparison sort; then runs of equal deadlines, the only
  // place where nodes are read, are put in scheduling order.
  void sort_by_deadline(Entry* entries, size_t n) {
    if (n < kMinRadixSort) {
      // A lambda, not &earlier: std::sort inlines it.
      std::sort(entries, entries + n, [](const Entry& a, const Entry& b) { return earlier(a, b); });
      return;
    }
    constexpr int kDigits = 8;
    uint32_t counts[kDigits][256] = {};
    for (size_t i = 0; i < n; ++i) {
      const uint64_t key = order_key(entries[i].when);
      for (int d = 0; d < kDigits; ++d) ++counts[d][(key >> (8 * d)) & 0xff];
    }
    scratch_.resize(n);
    Entry* from = entries;
    Entry* to = scratch_.data();
    for (int d = 0; d < kDigits; ++d) {
      const uint64_t shift = 8 * static_cast<uint64_t>(d);
      if (counts[d][(order_key(entries[0].when) >> shift) & 0xff] == n) continue;  // all alike
      size_t offsets[256];
      size_t sum = 0;
      for (int b = 0; b < 256; ++b) {
        offsets[b] = sum;
        sum += counts[d][b];
      }
      for (size_t i = 0; i < n; ++i)
        to[offsets[(order_key(from[i].when) >> shift) & 0xff]++] = from[i];
      std::swap(from, to);
    }
    if (from != entries) std::copy(from, from + n, entries);
    for (size_t run = 0; run < n;) {
      size_t end = run + 1;
      while (end < n && entries[end].when == entries[run].when) ++end;
      if (end - run > 1) {
        std::sort(entries + run, entries + end, [](const Entry& a, const Entry& b) {
          return a.node->timer_seq < b.node->timer_seq;
        });
      }
      run = end;
    }
  }

  // Unsigned integers in the order of the doubles (no NaN here; -0.0 and
  // +0.0, equal deadlines, get one key).
  static uint64_t order_key(double when) {
    const uint64_t bits = std::bit_cast<uint64_t>(when == 0 ? 0.0 : when);
    return (bits >> 63) != 0 ? ~bits : bits | (uint64_t{1} << 63);
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
  bool sorted_ = true;          // entries_ is in firing order
  std::vector<Entry> scratch_;  // sort_by_deadline's, kept for its capacity
};

}  // namespace asyncio::loop_internal
