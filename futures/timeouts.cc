// Timeout's state machine; the templates are in timeouts.h.
#include "futures/timeouts.h"

#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace asyncio {

namespace {

const char* state_name(int state) {
  static const char* const kNames[] = {"created", "active", "expiring", "expired", "finished"};
  return kNames[state];
}

// As Python prints round(when, 3): the shortest form, with ".0" on whole
// numbers.
std::string format_deadline(double when) {
  if (std::isfinite(when)) when = std::round(when * 1000) / 1000;
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, when);
  std::string text(buffer, error == std::errc() ? end : buffer);
  if (std::isfinite(when) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

void Timeout::enter() {
  if (state_ != State::kCreated) throw std::runtime_error("Timeout has already been entered");
  futures_internal::TaskCore* task = futures_internal::current_task_core();
  if (task == nullptr) throw std::runtime_error("Timeout should be used inside a task");
  state_ = State::kEntered;
  task_ = task;
  cancelling_at_enter_ = task->cancelling();
  reschedule(when_);
}

void Timeout::reschedule(std::optional<double> when) {
  if (state_ != State::kEntered) {
    if (state_ == State::kCreated) throw std::runtime_error("Timeout has not been entered");
    throw std::runtime_error(std::string("Cannot change state of ") +
                             state_name(static_cast<int>(state_)) + " Timeout");
  }
  if (when) futures_internal::check_timeout_not_nan(*when, "Timeout.reschedule");
  when_ = when;
  timer_.cancel();
  timer_ = Handle();
  if (!when) return;
  EventLoop& loop = task_->loop();
  // A deadline already passed fires before the body's next step, as with
  // call_soon in asyncio, rather than after the steps already queued.
  if (*when <= loop.time()) {
    timer_ = loop.call_soon([this] { on_timeout(); });
  } else {
    timer_ = loop.call_at(*when, [this] { on_timeout(); });
  }
}

void Timeout::on_timeout() {
  task_->cancel("");
  state_ = State::kExpiring;
}

void Timeout::exit(bool cancelled) {
  timer_.cancel();
  timer_ = Handle();
  if (state_ == State::kExpiring) {
    state_ = State::kExpired;
    // Only our own cancellation, with no other request since the block
    // began, becomes a TimeoutError; anyone else's passes through.
    if (task_->uncancel() <= cancelling_at_enter_ && cancelled) throw TimeoutError();
  } else if (state_ == State::kEntered) {
    state_ = State::kExited;
  }
}

std::string Timeout::repr() const {
  std::string text = std::string("<Timeout [") + state_name(static_cast<int>(state_)) + "]";
  if (state_ == State::kEntered) text += " when=" + (when_ ? format_deadline(*when_) : "None");
  return text + ">";
}

}  // namespace asyncio
