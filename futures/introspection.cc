#include "futures/introspection.h"

#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "futures/futures.h"

namespace asyncio {
namespace futures_internal {

bool TaskRegistry::is_generator_frame(const void* frame) const noexcept {
  for (const GeneratorControl* g = generators_; g != nullptr; g = g->next) {
    if (g->frame.address() == frame) return true;
  }
  return false;
}

void TaskRegistry::note_foreign_resume_point(const TaskCore* task, const void* frame) {
  foreign_resume_points_[task] = frame;
}

bool TaskRegistry::is_foreign_resume_point(const TaskCore* task, const void* frame) const noexcept {
  auto it = foreign_resume_points_.find(task);
  return it != foreign_resume_points_.end() && it->second == frame;
}

namespace {

// The TaskCore in a Coro frame. Every Promise<T> has its TaskCore as primary
// base at the promise's start, and (is_coro_promise) an alignment that puts
// the promise at the same place in the frame whatever T is.
TaskCore* coro_core(const void* frame) {
  auto h = std::coroutine_handle<Promise<void>>::from_address(const_cast<void*>(frame));
  return &h.promise();
}

// The frame whose promise holds `core`. Through the TaskCore itself, not a
// Promise<T> of a guessed T (a downcast UBSan rightly refuses): the promise
// sits at the same place in the frame whatever T is (see coro_core).
const void* frame_of(const TaskCore& core) {
  return std::coroutine_handle<TaskCore>::from_promise(const_cast<TaskCore&>(core)).address();
}

// The coroutine frame ABI of GCC and Clang: the resume function comes first.
const void* resume_code(const void* frame) { return *static_cast<const void* const*>(frame); }

std::string describe_error(const std::exception_ptr& exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

std::string state_of(const FutureStateBase& f) {
  if (f.cancelled()) return "cancelled";
  if (f.done()) return "finished";
  return "pending";
}

// A short form of what a task waits on, not recursive.
std::string describe_awaited(const FutureStateBase& f) {
  if (const auto* task = dynamic_cast<const TaskCore*>(&f); task != nullptr && task->is_task()) {
    return "<Task " + state_of(f) + " name='" + task->name() + "'>";
  }
  return "<Future " + state_of(f) + ">";
}

std::string describe_code(const void* code) {
  Dl_info info{};
  if (dladdr(code, &info) == 0) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%p", code);
    return buffer;
  }
  if (info.dli_sname != nullptr) {
    int status = 0;
    std::unique_ptr<char, decltype(&std::free)> demangled(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), &std::free);
    return status == 0 ? demangled.get() : info.dli_sname;
  }
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "(+0x%zx)",
                static_cast<size_t>(static_cast<const char*>(code) -
                                    static_cast<const char*>(info.dli_fbase)));
  return std::string(info.dli_fname != nullptr ? info.dli_fname : "") + buffer;
}

}  // namespace

std::string describe_task(const TaskCore& core) {
  std::string state = state_of(core);
  if (!core.done() && core.cancel_requested()) state = "cancelling";
  std::string text = "<Task " + state + " name='" + core.name() + "'";
  if (!core.done() && core.waiting_on() != nullptr) {
    text += " wait_for=" + describe_awaited(*core.waiting_on());
  }
  if (core.done() && !core.cancelled() && core.stored_exception()) {
    text += " exception=" + describe_error(core.stored_exception());
  }
  // As asyncio's repr in debug mode: where the task was made.
  if (const std::source_location* where = core.created_at()) {
    text += " created at " + std::string(where->file_name()) + ":" + std::to_string(where->line());
  }
  return text + ">";
}

const void* coroutine_identity(const TaskCore& core) {
  if (core.done()) return nullptr;
  return frame_of(core);
}

}  // namespace futures_internal

std::optional<AnyTask> current_task(EventLoop& loop) {
  futures_internal::TaskCore* core = futures_internal::current_task_core();
  if (core == nullptr || &core->loop() != &loop) return std::nullopt;
  return futures_internal::Access::any_task(core);
}

std::vector<AnyTask> all_tasks(EventLoop& loop) {
  auto* registry = futures_internal::TaskRegistry::find(loop);
  if (registry == nullptr) return {};
  return registry->pending_tasks();
}

std::string repr(const AnyTask& task) {
  return futures_internal::describe_task(*futures_internal::Access::core(task));
}

std::vector<TaskFrame> get_stack(const AnyTask& task, std::optional<size_t> limit) {
  using namespace futures_internal;
  TaskCore* root = Access::core(task);
  if (root->done()) return {};
  std::vector<TaskFrame> frames;  // innermost first, while walking
  if (root == current_task_core()) {
    // Running: its resume point is stale until it suspends again.
    const void* frame = frame_of(*root);
    frames.push_back({TaskFrame::Kind::kCoroutine, frame, resume_code(frame)});
  } else {
    const TaskRegistry* registry = TaskRegistry::find(root->loop());
    const auto other_kind = [registry](const void* frame) {
      return registry != nullptr && registry->is_generator_frame(frame)
                 ? TaskFrame::Kind::kAsyncGenerator
                 : TaskFrame::Kind::kOther;
    };
    const void* frame = root->link_.address();
    if (registry != nullptr &&
        (registry->is_generator_frame(frame) || registry->is_foreign_resume_point(root, frame))) {
      frames.push_back({other_kind(frame), frame, resume_code(frame)});
    } else {
      // Each Coro names its awaiting parent, up to the task's own coroutine.
      for (;;) {
        TaskCore* core = coro_core(frame);
        frames.push_back({TaskFrame::Kind::kCoroutine, frame, resume_code(frame)});
        if (core == root || core->is_task()) break;
        frame = core->link_.address();
        if (core->parent_unknown_) {
          frames.push_back({other_kind(frame), frame, resume_code(frame)});
          break;
        }
      }
    }
  }
  if (limit && frames.size() > *limit) frames.resize(*limit);  // keeps the innermost
  std::reverse(frames.begin(), frames.end());
  return frames;
}

void print_stack(const AnyTask& task, std::optional<size_t> limit, std::FILE* file) {
  std::vector<TaskFrame> frames = get_stack(task, limit);
  std::string text;
  if (frames.empty()) {
    text = "No stack for " + repr(task) + "\n";
  } else {
    text = "Stack for " + repr(task) + " (most recent call last):\n";
    for (const TaskFrame& f : frames) {
      char address[32];
      std::snprintf(address, sizeof address, "%p", f.address);
      const char* kind = f.kind == TaskFrame::Kind::kCoroutine        ? "coroutine"
                         : f.kind == TaskFrame::Kind::kAsyncGenerator ? "async generator"
                                                                      : "other coroutine";
      text += std::string("  ") + kind + " frame " + address + " in " +
              futures_internal::describe_code(f.resume) + "\n";
    }
  }
  std::fwrite(text.data(), 1, text.size(), file);
  std::fflush(file);
}

}  // namespace asyncio
