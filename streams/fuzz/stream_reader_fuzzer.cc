// libFuzzer target: StreamReader against a reference model (a plain string
// buffer with asyncio's StreamReader semantics).
//
// The input is: a limit byte, an operation count byte, two bytes per
// operation (kind, parameter), then the data as chunks (a length byte and
// that many bytes). Each operation runs as a task on a fresh loop; while it
// waits for data, the next chunk is fed (EOF when the chunks run out). After
// each feed the model says whether the operation can finish; the task must
// be done exactly when the model says so, with the same result.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "futures/futures.h"
#include "loop/loop.h"
#include "streams/streams.h"

namespace {

using asyncio::Coro;
using asyncio::EventLoop;
using asyncio::IncompleteReadError;
using asyncio::LimitOverrunError;
using asyncio::StreamReader;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "stream_reader_fuzzer: %s\n", what);
  std::abort();
}

// Reads the fuzz input front to back; past the end everything is zero.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string_view bytes(size_t n) {
    n = std::min(n, size_ - pos_);
    std::string_view out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }
  bool empty() const { return pos_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

enum class Kind { kRead, kReadExactly, kReadLine, kReadUntil };

struct Op {
  Kind kind;
  ssize_t n = 0;  // read, readexactly
  std::string separator;
};

constexpr std::string_view kSeparators[] = {"\n", "\r\n", "ab", "aba"};

Op decode_op(uint8_t kind, uint8_t param) {
  switch (kind % 4) {
    case 0:
      return {Kind::kRead, static_cast<ssize_t>(param % 40) - 4, ""};  // < 0: until EOF
    case 1:
      return {Kind::kReadExactly, param % 40, ""};
    case 2:
      return {Kind::kReadLine, 0, ""};
    default:
      return {Kind::kReadUntil, 0, std::string(kSeparators[param % 4])};
  }
}

// What an operation returned or threw.
struct Outcome {
  enum class Type { kValue, kIncomplete, kOverrun } type = Type::kValue;
  std::string data;                // the value, or IncompleteReadError::partial()
  std::optional<size_t> expected;  // IncompleteReadError::expected()
  size_t consumed = 0;             // LimitOverrunError::consumed()

  bool operator==(const Outcome&) const = default;
};

// asyncio's StreamReader as a plain buffer: try_op says what `op` does now,
// or nullopt when it has to wait for more data.
struct Model {
  size_t limit;
  std::string buffer;
  bool eof = false;

  std::string take(size_t n) {
    std::string out = buffer.substr(0, n);
    buffer.erase(0, n);
    return out;
  }

  std::optional<Outcome> readuntil(std::string_view sep) {
    const size_t found = buffer.find(sep);
    if (found != std::string::npos) {
      if (found > limit) return Outcome{Outcome::Type::kOverrun, "", std::nullopt, found};
      return Outcome{Outcome::Type::kValue, take(found + sep.size()), std::nullopt, 0};
    }
    if (buffer.size() >= sep.size() && buffer.size() + 1 - sep.size() > limit) {
      return Outcome{Outcome::Type::kOverrun, "", std::nullopt, buffer.size() + 1 - sep.size()};
    }
    if (eof) return Outcome{Outcome::Type::kIncomplete, take(buffer.size()), std::nullopt, 0};
    return std::nullopt;
  }

  std::optional<Outcome> try_op(const Op& op) {
    switch (op.kind) {
      case Kind::kRead:
        if (op.n == 0) return Outcome{};
        if (op.n < 0) {
          if (!eof) return std::nullopt;
          return Outcome{Outcome::Type::kValue, take(buffer.size()), std::nullopt, 0};
        }
        if (buffer.empty() && !eof) return std::nullopt;
        return Outcome{Outcome::Type::kValue, take(static_cast<size_t>(op.n)), std::nullopt, 0};
      case Kind::kReadExactly: {
        const auto n = static_cast<size_t>(op.n);
        if (n == 0) return Outcome{};
        if (buffer.size() >= n) return Outcome{Outcome::Type::kValue, take(n), std::nullopt, 0};
        if (eof) return Outcome{Outcome::Type::kIncomplete, take(buffer.size()), n, 0};
        return std::nullopt;
      }
      case Kind::kReadLine: {
        std::optional<Outcome> outcome = readuntil("\n");
        if (!outcome) return std::nullopt;
        if (outcome->type == Outcome::Type::kIncomplete) {
          return Outcome{Outcome::Type::kValue, outcome->data, std::nullopt, 0};
        }
        if (outcome->type == Outcome::Type::kOverrun) {
          // The overlong line is dropped, through its '\n' if it is there.
          if (outcome->consumed < buffer.size() && buffer[outcome->consumed] == '\n') {
            buffer.erase(0, outcome->consumed + 1);
          } else {
            buffer.clear();
          }
        }
        return outcome;
      }
      case Kind::kReadUntil:
        return readuntil(op.separator);
    }
    return std::nullopt;
  }
};

Coro<Outcome> run_op(StreamReader reader, Op op) {
  Outcome outcome;
  try {
    switch (op.kind) {
      case Kind::kRead:
        outcome.data = co_await reader.read(op.n);
        break;
      case Kind::kReadExactly:
        outcome.data = co_await reader.readexactly(static_cast<size_t>(op.n));
        break;
      case Kind::kReadLine:
        outcome.data = co_await reader.readline();
        break;
      case Kind::kReadUntil:
        outcome.data = co_await reader.readuntil(op.separator);
        break;
    }
  } catch (const IncompleteReadError& e) {
    outcome.type = Outcome::Type::kIncomplete;
    outcome.data = e.partial();
    outcome.expected = e.expected();
  } catch (const LimitOverrunError& e) {
    outcome.type = Outcome::Type::kOverrun;
    outcome.consumed = e.consumed();
  }
  co_return outcome;
}

// One iteration of the loop: the callbacks ready now (and not those they
// schedule).
void run_once(EventLoop& loop) {
  loop.call_soon([&loop] { loop.stop(); });
  loop.run_forever();
}

// Enough iterations for a woken reader to get to its next wait or finish.
constexpr int kSettleIterations = 4;

void run_input(const uint8_t* data, size_t size) {
  Input input(data, size);
  const size_t limit = 1 + input.byte() % 32;
  const int op_count = 1 + input.byte() % 16;
  Op ops[16];
  for (int i = 0; i < op_count; ++i) {
    const uint8_t kind = input.byte();
    ops[i] = decode_op(kind, input.byte());
  }

  std::unique_ptr<EventLoop> loop = asyncio::new_event_loop();
  StreamReader reader(limit, loop.get());
  Model model{limit, "", false};

  // Feeds the next chunk, or EOF when there is none; false once EOF was fed.
  auto feed = [&]() {
    if (model.eof) return false;
    if (input.empty()) {
      model.eof = true;
      reader.feed_eof();
      return true;
    }
    const std::string_view chunk = input.bytes(input.byte() % 24);
    model.buffer.append(chunk);
    reader.feed_data(chunk);
    return true;
  };

  for (int i = 0; i < op_count; ++i) {
    auto task = asyncio::create_task(*loop, run_op(reader, ops[i]));
    while (true) {
      std::optional<Outcome> expected = model.try_op(ops[i]);
      for (int k = 0; k < kSettleIterations && !task.done(); ++k) run_once(*loop);
      if (expected) {
        for (int k = 0; k < 100 && !task.done(); ++k) run_once(*loop);
        if (!task.done()) fail("the model finished, the reader still waits");
        if (!(task.result() == *expected)) fail("the reader and the model disagree");
        break;
      }
      if (task.done()) fail("the reader finished, the model waits for data");
      if (!feed()) fail("the model waits after EOF");
    }
    if (reader.at_eof() != (model.eof && model.buffer.empty())) fail("at_eof() disagrees");
  }
  loop->close();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run_input(data, size);
  return 0;
}
