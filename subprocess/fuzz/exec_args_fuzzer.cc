// libFuzzer target: the argv and envp arrays a child is spawned with
// (build_exec_args, check_no_nul).
//
// The input is: a flags byte (bit 0: an env is given), an argv count byte,
// then strings, each a length byte and that many bytes: the argv strings
// first, then (name, value) pairs for the env. build_exec_args must throw
// std::invalid_argument exactly when a string holds a NUL byte or an env
// name is empty or contains '='; otherwise argv must point at the caller's
// strings, envp hold "NAME=value" for each variable in order, and both be
// null-terminated. check_no_nul must throw exactly for a string with a NUL.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "subprocess/internal/spawn.h"

namespace {

namespace sp = asyncio::subprocess_internal;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "exec_args_fuzzer: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// Reads the fuzz input front to back; past the end everything is empty.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string string() {
    size_t n = byte();
    n = std::min(n, size_ - pos_);
    std::string s(reinterpret_cast<const char*>(data_) + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

void check_nul_check(std::string_view s) {
  bool threw = false;
  try {
    sp::check_no_nul(s, "fuzz input");
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw == has_nul(s), "check_no_nul disagrees about a NUL byte");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const bool with_env = in.byte() & 1;
  const size_t argc = in.byte() % 16;
  std::vector<std::string> argv;
  for (size_t i = 0; i < argc && !in.done(); ++i) argv.push_back(in.string());
  std::optional<std::map<std::string, std::string>> env;
  if (with_env) {
    env.emplace();
    while (!in.done()) {
      std::string name = in.string();
      (*env)[name] = in.string();
    }
  }

  bool refused = false;
  for (const std::string& arg : argv) {
    check_nul_check(arg);
    refused = refused || has_nul(arg);
  }
  if (env) {
    for (const auto& [name, value] : *env) {
      check_nul_check(name);
      check_nul_check(value);
      refused = refused || has_nul(name) || has_nul(value) || name.empty() ||
                name.find('=') != std::string::npos;
    }
  }

  std::optional<sp::ExecArgs> args;
  try {
    args.emplace(sp::build_exec_args(argv, env));
  } catch (const std::invalid_argument&) {
    check(refused, "build_exec_args refused valid strings");
    return 0;
  }
  check(!refused, "build_exec_args accepted a NUL byte or a bad env name");

  check(args->argv.size() == argv.size() + 1, "argv has the wrong length");
  for (size_t i = 0; i < argv.size(); ++i) {
    check(args->argv[i] == argv[i].c_str(), "argv does not point at the caller's string");
  }
  check(args->argv.back() == nullptr, "argv is not null-terminated");

  if (!env) {
    check(args->envp.empty(), "envp given without an env");
    return 0;
  }
  check(args->envp.size() == env->size() + 1, "envp has the wrong length");
  size_t i = 0;
  for (const auto& [name, value] : *env) {
    const std::string expected = name + "=" + value;
    const char* entry = args->envp[i++];
    check(entry != nullptr && std::strlen(entry) == expected.size() &&
              std::memcmp(entry, expected.data(), expected.size()) == 0,
          "envp entry is not NAME=value");
  }
  check(args->envp.back() == nullptr, "envp is not null-terminated");
  return 0;
}
