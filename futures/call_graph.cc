#include "futures/call_graph.h"

#include <execinfo.h>

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/debugging/symbolize.h"
#include "futures/futures.h"
#include "futures/internal/call_graph_nodes.h"

namespace asyncio {
namespace futures_internal {
namespace {

template <class Visit>
void for_each_callback(const FutureStateBase& future, Visit visit) {
  const CallbackNode* first = future.first_callback();
  if (first == nullptr) return;
  const CallbackNode* node = first;
  do {
    visit(*node);
    node = node->next;
  } while (node != first);
}

const TaskCore* as_task(const FutureStateBase* future) noexcept {
  const auto* task = dynamic_cast<const TaskCore*>(future);
  return task != nullptr && task->is_task() ? task : nullptr;
}

void add_unique(std::vector<FutureStateBase*>& list, FutureStateBase* item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(item);
}

// The futures and tasks awaiting `future`, read from its callbacks. The
// outer future of gather and the waiter of wait are seen through: whoever
// awaits them awaits the child, as 3.14 records it.
void collect_awaiters(const FutureStateBase& future, std::vector<FutureStateBase*>& out,
                      std::vector<const FutureStateBase*>& seen) {
  if (std::find(seen.begin(), seen.end(), &future) != seen.end()) return;
  seen.push_back(&future);
  for_each_callback(future, [&](const CallbackNode& node) {
    if (TaskCore* task = waking_task(node)) {
      add_unique(out, task);
    } else if (const AwaitedByNode* record = AwaitedByNode::of(node)) {
      add_unique(out, record->waiter);
    } else if (FutureStateBase* outer = combinator_future(node)) {
      collect_awaiters(*outer, out, seen);
    }
  });
}

std::vector<FutureStateBase*> awaiters_of(const FutureStateBase& future) {
  std::vector<FutureStateBase*> out;
  std::vector<const FutureStateBase*> seen;
  collect_awaiters(future, out, seen);
  return out;
}

// The tasks awaiting `future`, through plain futures that await it.
std::vector<const TaskCore*> awaiting_tasks(const FutureStateBase& future) {
  std::vector<const TaskCore*> tasks;
  std::vector<const FutureStateBase*> visited{&future};
  std::vector<FutureStateBase*> pending = awaiters_of(future);
  while (!pending.empty()) {
    FutureStateBase* f = pending.back();
    pending.pop_back();
    if (std::find(visited.begin(), visited.end(), f) != visited.end()) continue;
    visited.push_back(f);
    if (const TaskCore* task = as_task(f)) {
      tasks.push_back(task);
    } else {
      for (FutureStateBase* w : awaiters_of(*f)) pending.push_back(w);
    }
  }
  return tasks;
}

// "asyncio::wait" from a symbol the symbolizer left mangled (Clang mangles a
// requires-clause it cannot read): the leading components of its nested
// name, _ZN<length><identifier>...; empty if it is not one.
std::string nested_name(std::string_view mangled) {
  if (!mangled.starts_with("_ZN")) return "";
  mangled.remove_prefix(3);
  std::string name;
  while (!mangled.empty() && mangled.front() >= '0' && mangled.front() <= '9') {
    size_t length = 0;
    while (!mangled.empty() && mangled.front() >= '0' && mangled.front() <= '9') {
      length = length * 10 + static_cast<size_t>(mangled.front() - '0');
      mangled.remove_prefix(1);
    }
    if (length > mangled.size()) return "";
    if (!name.empty()) name += "::";
    name += mangled.substr(0, length);
    mangled.remove_prefix(length);
  }
  return name;
}

// "app::fetch()" from the symbol of the coroutine's body. As GCC's symbols
// read, a function template's arguments are left out (Clang's keep an empty
// "<>").
std::string function_name(const void* code) {
  char symbol[1024];
  if (absl::Symbolize(const_cast<void*>(code), symbol, sizeof symbol)) {
    std::string name = symbol;
    if (std::string nested = nested_name(name); !nested.empty()) return nested + "()";
    if (name.ends_with("<>()")) name.erase(name.size() - 4, 2);
    return name;
  }
  char address[32];
  std::snprintf(address, sizeof address, "%p", code);
  return address;
}

// Innermost first.
std::vector<FrameCallGraphEntry> call_stack_of(const TaskCore& task) {
  std::vector<FrameCallGraphEntry> stack;
  if (!task.started() || task.done()) return stack;
  // The running task's frame is past its last co_await: no line for it.
  const bool suspended = &task != current_task_core();
  for (const TaskFrame& frame : get_stack(Access::any_task(const_cast<TaskCore*>(&task)))) {
    FrameCallGraphEntry entry{frame, function_name(frame.resume), "", 0};
#ifdef ASYNCIO_AWAIT_LOCATIONS
    if (suspended && frame.kind == TaskFrame::Kind::kCoroutine) {
      const std::source_location& at =
          std::coroutine_handle<Promise<void>>::from_address(const_cast<void*>(frame.address))
              .promise()
              .awaited_at_;
      std::string_view file = at.file_name();
      if (file.starts_with("./")) file.remove_prefix(2);  // as some include paths name it
      entry.file = file;
      entry.line = at.line();
    }
#else
    (void)suspended;
#endif
    stack.push_back(std::move(entry));
  }
  std::reverse(stack.begin(), stack.end());
  return stack;
}

// 3.14's limit on a stack kept innermost first: positive keeps the
// outermost frames, negative the innermost ones.
void apply_limit(std::vector<FrameCallGraphEntry>& stack, std::optional<int> limit) {
  if (!limit) return;
  const size_t keep = std::min(stack.size(), static_cast<size_t>(std::abs(*limit)));
  if (*limit >= 0) {
    stack.erase(stack.begin(), stack.end() - static_cast<std::ptrdiff_t>(keep));
  } else {
    stack.resize(keep);
  }
}

FutureCallGraph build_graph(FutureStateBase* future, std::optional<int> limit,
                            std::vector<const FutureStateBase*>& path) {
  future->add_ref();
  FutureCallGraph graph{Access::adopt_future<void>(future), std::nullopt, {}, {}};
  if (const TaskCore* task = as_task(future)) {
    graph.task = Access::any_task(const_cast<TaskCore*>(task));
    graph.call_stack = call_stack_of(*task);
    apply_limit(graph.call_stack, limit);
  }
  // Tasks awaiting each other would recurse forever: a cycle ends the branch.
  if (std::find(path.begin(), path.end(), future) != path.end()) return graph;
  path.push_back(future);
  for (FutureStateBase* waiter : awaiters_of(*future)) {
    graph.awaited_by.push_back(build_graph(waiter, limit, path));
  }
  path.pop_back();
  return graph;
}

std::string hex_id(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%#" PRIxPTR, reinterpret_cast<uintptr_t>(p));
  return text;
}

const char* frame_tag(TaskFrame::Kind kind) {
  switch (kind) {
    case TaskFrame::Kind::kCoroutine:
      return "async";
    case TaskFrame::Kind::kAsyncGenerator:
      return "async generator";
    case TaskFrame::Kind::kOther:
      break;
  }
  return "coroutine";
}

void render_level(const FutureCallGraph& graph, std::string& out, int level) {
  const std::string indent(static_cast<size_t>(level) * 4, ' ');
  const auto add_line = [&](const std::string& line) { out += indent + line + "\n"; };
  const void* id = Access::state(graph.future);
  if (graph.task) {
    add_line("* Task(name='" + graph.task->get_name() + "', id=" + hex_id(id) + ")");
  } else {
    add_line("* Future(id=" + hex_id(id) + ")");
  }
  if (!graph.call_stack.empty()) {
    add_line("  + Call stack:");
    for (const FrameCallGraphEntry& entry : graph.call_stack) {
      std::string where;
      if (entry.line != 0) {
        where = "File '" + entry.file + "', line " + std::to_string(entry.line) + ", ";
      }
      add_line("  |   " + where + "in " + frame_tag(entry.frame.kind) + " " + entry.function);
    }
  }
  if (!graph.awaited_by.empty()) {
    add_line("  + Awaited by:");
    for (const FutureCallGraph& waiter : graph.awaited_by) render_level(waiter, out, level + 1);
  }
}

std::string task_state(const TaskCore& task) {
  if (&task == current_task_core()) return "running";
  if (task.cancel_requested()) return "cancelling";
  return "pending";
}

std::string joined_stack(const TaskCore& task) {
  std::string text;
  for (const FrameCallGraphEntry& entry : call_stack_of(task)) {
    if (!text.empty()) text += " -> ";
    text += entry.function;
  }
  return text;
}

std::vector<const TaskCore*> pending_task_cores(EventLoop& loop) {
  std::vector<const TaskCore*> cores;
  for (const AnyTask& task : all_tasks(loop)) cores.push_back(Access::core(task));
  return cores;
}

}  // namespace

void report_never_awaited(const void* frame) noexcept {
  try {
    // The coroutine frame ABI of GCC and Clang: the resume function first.
    std::string name = function_name(*static_cast<const void* const*>(frame));
    if (name.ends_with("()")) name.resize(name.size() - 2);
    std::string message = "coroutine '" + name + "' was never awaited";
    EventLoop* loop = running_loop_or_null();
    if (loop != nullptr && loop->get_debug()) {
      // The stack of the drop, innermost first as backtrace() gives it,
      // from the caller of ~Coro (or of operator=) on: the frames up to the
      // first run of Coro's own are left out (this function, backtrace's
      // interceptor under a sanitizer). At most 10 frames, as asyncio's
      // debug mode keeps of a coroutine's origin.
      void* stack[64];
      const int depth = backtrace(stack, 64);
      std::vector<std::string> names;
      size_t first = 1;  // without a Coro frame (inlined): all but this function
      bool seen_coro = false;
      bool past_coro = false;
      for (int i = 0; i < depth; ++i) {
        names.push_back(function_name(stack[i]));
        if (past_coro) continue;
        if (names.back().starts_with("asyncio::Coro<")) {
          seen_coro = true;
          first = names.size();
        } else {
          past_coro = seen_coro;
        }
      }
      message += "\nCoroutine dropped at (most recent call first):";
      for (size_t i = first; i < names.size() && i < first + 10; ++i) message += "\n  " + names[i];
    }
    if (loop != nullptr) {
      loop->call_exception_handler({message, nullptr, "", ""});
    } else {
      message += "\n";
      std::fwrite(message.data(), 1, message.size(), stderr);
      std::fflush(stderr);
    }
  } catch (...) {
    // A report must not throw out of a destructor; nothing else to do.
  }
}

TaskCore* waking_task(const CallbackNode& node) noexcept {
  return node.fire == &WakeNode::wake ? static_cast<const WakeNode&>(node).task : nullptr;
}

void add_awaited_by(FutureStateBase* future, FutureStateBase* waiter) {
  if (&future->loop() != &waiter->loop()) {
    throw std::invalid_argument("future_add_to_awaited_by: the futures belong to different loops");
  }
  if (future->done()) return;  // nobody can await it any more
  bool known = false;
  for_each_callback(*future, [&](const CallbackNode& node) {
    const AwaitedByNode* record = AwaitedByNode::of(node);
    known = known || (record != nullptr && record->waiter == waiter);
  });
  if (!known) future->add_callback(new AwaitedByNode(waiter));
}

void discard_awaited_by(FutureStateBase* future, FutureStateBase* waiter) {
  future->remove_callbacks_if([waiter](CallbackNode* node) {
    const AwaitedByNode* record = AwaitedByNode::of(*node);
    return record != nullptr && record->waiter == waiter;
  });
}

FutureCallGraph capture_call_graph_of(FutureStateBase* future, std::optional<int> limit) {
  std::vector<const FutureStateBase*> path;
  return build_graph(future, limit, path);
}

}  // namespace futures_internal

FutureCallGraph capture_call_graph(const AnyTask& task, std::optional<int> limit) {
  return futures_internal::capture_call_graph_of(futures_internal::Access::core(task), limit);
}

std::optional<FutureCallGraph> capture_call_graph(std::optional<int> limit) {
  if (running_loop_or_null() == nullptr) {
    throw std::runtime_error(
        "capture_call_graph() is called outside of a running event loop and no future to "
        "introspect was provided");
  }
  futures_internal::TaskCore* current = futures_internal::current_task_core();
  if (current == nullptr) return std::nullopt;
  return futures_internal::capture_call_graph_of(current, limit);
}

std::string format_call_graph(const FutureCallGraph& graph) {
  std::string text;
  futures_internal::render_level(graph, text, 0);
  if (!text.empty()) text.pop_back();  // as Python's '\n'.join
  return text;
}

std::string format_call_graph(const AnyTask& task, std::optional<int> limit) {
  return format_call_graph(capture_call_graph(task, limit));
}

std::string format_call_graph(std::optional<int> limit) {
  std::optional<FutureCallGraph> graph = capture_call_graph(limit);
  return graph ? format_call_graph(*graph) : "";
}

void print_call_graph(const AnyTask& task, std::optional<int> limit, std::FILE* file) {
  std::string text = format_call_graph(task, limit) + "\n";
  std::fwrite(text.data(), 1, text.size(), file);
  std::fflush(file);
}

void print_call_graph(std::optional<int> limit, std::FILE* file) {
  std::string text = format_call_graph(limit) + "\n";
  std::fwrite(text.data(), 1, text.size(), file);
  std::fflush(file);
}

std::string format_tasks_table(EventLoop& loop) {
  using namespace futures_internal;
  using Row = std::vector<std::string>;
  std::vector<Row> rows{{"task id", "task name", "state", "coroutine stack", "awaiter chain",
                         "awaiter name", "awaiter id"}};
  for (const TaskCore* task : pending_task_cores(loop)) {
    Row row{hex_id(task), task->name(), task_state(*task), joined_stack(*task), "", "", ""};
    std::vector<const TaskCore*> awaiters = awaiting_tasks(*task);
    if (awaiters.empty()) rows.push_back(row);
    for (const TaskCore* awaiter : awaiters) {
      row[4] = joined_stack(*awaiter);
      row[5] = awaiter->name();
      row[6] = hex_id(awaiter);
      rows.push_back(row);
    }
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const Row& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string text;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      line += rows[r][i];
      if (i + 1 < rows[r].size()) line += std::string(widths[i] - rows[r][i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    text += line + "\n";
    if (r == 0) {
      size_t total = 0;
      for (size_t w : widths) total += w + 2;
      text += std::string(total - 2, '-') + "\n";
    }
  }
  return text;
}

std::string format_task_tree(EventLoop& loop) {
  using namespace futures_internal;
  const std::vector<const TaskCore*> tasks = pending_task_cores(loop);
  // children[t]: the tasks t awaits, in creation order.
  std::unordered_map<const TaskCore*, std::vector<const TaskCore*>> children;
  std::vector<const TaskCore*> roots;
  for (const TaskCore* task : tasks) {
    std::vector<const TaskCore*> awaiters = awaiting_tasks(*task);
    if (awaiters.empty()) roots.push_back(task);
    for (const TaskCore* awaiter : awaiters) children[awaiter].push_back(task);
  }

  std::string text;
  std::vector<const TaskCore*> path;
  std::function<void(const TaskCore*, const std::string&, bool)> draw_task;
  draw_task = [&](const TaskCore* task, const std::string& prefix, bool last) {
    const bool on_path = std::find(path.begin(), path.end(), task) != path.end();
    text += prefix + (last ? "└── " : "├── ") + "(T) " + task->name() +
            (on_path ? " (cycle)" : "") + "\n";
    if (on_path) return;
    std::string inner = prefix + (last ? "    " : "│   ");
    // The frames, outermost first, each under the one that awaits it.
    std::vector<FrameCallGraphEntry> stack = call_stack_of(*task);
    std::reverse(stack.begin(), stack.end());
    for (const FrameCallGraphEntry& entry : stack) {
      text += inner + "└──  " + entry.function;
      if (entry.line != 0) text += " " + entry.file + ":" + std::to_string(entry.line);
      text += "\n";
      inner += "    ";
    }
    path.push_back(task);
    const std::vector<const TaskCore*>& awaited = children[task];
    for (size_t i = 0; i < awaited.size(); ++i) {
      draw_task(awaited[i], inner, i + 1 == awaited.size());
    }
    path.pop_back();
  };
  for (const TaskCore* root : roots) draw_task(root, "", true);

  // Cycles: a depth-first search over "awaits" edges; a task met again on
  // the current path closes one.
  std::set<std::vector<const TaskCore*>> seen_cycles;
  std::vector<std::vector<const TaskCore*>> cycles;
  std::set<const TaskCore*> finished;
  std::function<void(const TaskCore*)> search = [&](const TaskCore* task) {
    auto on_path = std::find(path.begin(), path.end(), task);
    if (on_path != path.end()) {
      std::vector<const TaskCore*> cycle(on_path, path.end());
      std::vector<const TaskCore*> key = cycle;
      std::sort(key.begin(), key.end());
      if (seen_cycles.insert(key).second) cycles.push_back(std::move(cycle));
      return;
    }
    if (finished.count(task) != 0) return;
    path.push_back(task);
    for (const TaskCore* child : children[task]) search(child);
    path.pop_back();
    finished.insert(task);
  };
  for (const TaskCore* task : tasks) search(task);
  if (!cycles.empty()) {
    text += "ERROR: await-graph contains cycles - cannot print a tree of these tasks:\n";
    for (const std::vector<const TaskCore*>& cycle : cycles) {
      std::string line = "cycle: ";
      for (const TaskCore* task : cycle) line += task->name() + " -> ";
      text += line + cycle.front()->name() + "\n";
    }
  }
  return text;
}

}  // namespace asyncio
