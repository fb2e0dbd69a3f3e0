// Every example that needs no network, subprocess or executor,
// in the order of examples.h, each under a header.
#include <iostream>

#include "examples/lib/examples.h"

namespace asyncio_examples {
namespace {

struct Example {
  const char* header;
  void (*run)();
};

constexpr Example kExamples[] = {
    {"2. hello/world tasks", &run_hello_world_tasks},
    {"5. generator-based coroutines", &run_generator_based},
    {"2.4 queue workers", &run_queue_workers},
    {"3.4.1 call_soon: Hello World", &run_call_soon_hello},
    {"3.4.1 call_later: display_date", &run_call_later_dates},
    {"3.4.6 add_reader on a socketpair", &run_add_reader_socketpair},
    {"4. gather: factorials", &run_gather_factorials},
    {"4. wait_for: timeout", &run_wait_for_timeout},
    {"4. wait", &run_wait_example},
    {"4. shield", &run_shield_example},
    {"4. as_completed", &run_as_completed_example},
    {"2.2 TCP echo client and server", &run_echo_tcp},
    {"2.2 TCP echo client and server over TLS", &run_echo_tls},
    {"3.6 serve_forever", &run_serve_forever_example},
    {"dns: getaddrinfo(localhost) with c-ares", &run_resolve_localhost},
    {"3.4.8 run_in_executor: three pools", &run_run_in_executor_pools},
    {"4. run_coroutine_threadsafe", &run_run_coroutine_threadsafe_example},
    {"contextvars: a request id through tasks and threads", &run_request_id_context},
    {"gRPC bridge: asyncio server and client", &run_grpc_demo},
    {"2.3 create_subprocess_shell", &run_subprocess_examples},
};

}  // namespace

void run_tour() {
  bool first = true;
  for (const Example& example : kExamples) {
    if (!first) std::cout << '\n';
    first = false;
    std::cout << "== " << example.header << " ==\n";
    std::cout.flush();
    example.run();
  }
  std::cout.flush();
}

}  // namespace asyncio_examples
