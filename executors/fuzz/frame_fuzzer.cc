// libFuzzer target: the process pool's frame reader (frame_length,
// next_frame, parse_call), the code that reads what a worker or the parent
// sends over a socket.
//
// The input is: a byte choosing the frame size limit, a byte giving the
// function table's size, then the byte stream. Frames are taken off the
// stream until one is incomplete or refused; each body is parsed as a call.
// Every frame must lie within the stream, in order, with the length its
// header announces, never over the limit; a header over the limit must be
// refused with std::length_error and an incomplete frame must leave the
// stream untouched; a call must name an index below the table's size and
// carry the rest of the body as its arguments.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "executors/executors.h"

namespace {

namespace ex = asyncio::concurrent::executors_internal;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "frame_fuzzer: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

uint64_t max_frame_size_for(uint8_t choice) {
  switch (choice % 4) {
    case 0:
      return ex::kDefaultMaxFrameSize;
    case 1:
      return UINT64_MAX;
    case 2:
      return 0;
    default:
      return choice / 4;  // 0..63: small limits that the inputs reach
  }
}

uint64_t header_value(std::string_view header) {
  uint64_t n = 0;
  std::memcpy(&n, header.data(), sizeof(n));
  return n;
}

// The body must be parsed against a table of `count` entries whose entry i
// is recognizable (fn == i + 1).
void check_parse_call(std::string_view body, const ex::FunctionEntry* table, uint32_t count) {
  try {
    ex::Call call = ex::parse_call(body, table, count);
    check(body.size() >= sizeof(uint32_t), "parse_call accepted a body shorter than an index");
    uint32_t index = 0;
    std::memcpy(&index, body.data(), sizeof(index));
    check(index < count, "parse_call accepted an index outside the table");
    check(call.function.fn == uintptr_t{index} + 1, "parse_call returned the wrong entry");
    check(call.args.data() == body.data() + sizeof(index) &&
              call.args.size() == body.size() - sizeof(index),
          "parse_call's arguments are not the rest of the body");
  } catch (const std::runtime_error&) {
    uint32_t index = 0;
    if (body.size() >= sizeof(index)) {
      std::memcpy(&index, body.data(), sizeof(index));
      check(index >= count, "parse_call refused a valid call");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint64_t max_frame_size = max_frame_size_for(data[0]);
  const uint32_t function_count = data[1] % 8;
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  ex::FunctionEntry table[8] = {};
  for (uint32_t i = 0; i < 8; ++i) table[i].fn = uintptr_t{i} + 1;

  // frame_length takes exactly a header.
  try {
    uint64_t n = ex::frame_length(input.substr(0, ex::kFrameHeaderSize), max_frame_size);
    check(input.size() >= ex::kFrameHeaderSize, "frame_length accepted a short header");
    check(n == header_value(input) && n <= max_frame_size, "frame_length misread the header");
  } catch (const std::invalid_argument&) {
    check(input.size() < ex::kFrameHeaderSize, "frame_length refused a full header");
  } catch (const std::length_error&) {
    check(input.size() >= ex::kFrameHeaderSize && header_value(input) > max_frame_size,
          "frame_length refused a length within the limit");
  }

  std::string_view stream = input;
  for (;;) {
    const std::string_view before = stream;
    std::optional<std::string_view> body;
    try {
      body = ex::next_frame(stream, max_frame_size);
    } catch (const std::length_error&) {
      check(before.size() >= ex::kFrameHeaderSize && header_value(before) > max_frame_size,
            "next_frame refused a length within the limit");
      check(stream.data() == before.data() && stream.size() == before.size(),
            "next_frame consumed a refused frame");
      break;
    }
    if (!body) {
      check(stream.data() == before.data() && stream.size() == before.size(),
            "next_frame consumed an incomplete frame");
      check(before.size() < ex::kFrameHeaderSize ||
                before.size() - ex::kFrameHeaderSize < header_value(before),
            "next_frame missed a complete frame");
      break;
    }
    const uint64_t announced = header_value(before);
    check(announced <= max_frame_size, "next_frame returned a frame over the limit");
    check(body->size() == announced, "next_frame's body is not the announced length");
    check(body->data() == before.data() + ex::kFrameHeaderSize,
          "next_frame's body does not follow its header");
    check(body->data() + body->size() <= input.data() + input.size(),
          "next_frame's body lies outside the input");
    check(stream.data() == body->data() + body->size() &&
              stream.size() == before.size() - ex::kFrameHeaderSize - body->size(),
          "next_frame did not consume exactly the frame");
    check_parse_call(*body, table, function_count);
  }
  return 0;
}
