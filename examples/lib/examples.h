// The classic examples of Python's asyncio documentation, in C++.
//
// Each function runs one example of the asyncio documentation on its own event loop and
// prints to stdout what the Python version prints. Sleeps are a tenth of the
// Python ones (1 s -> 0.1 s), so every example takes well under a second and
// prints in the same order as the original.
#pragma once

namespace asyncio_examples {

// 2. create_task: say_after(0.1, "hello") and say_after(0.2, "world").
void run_hello_world_tasks();
// 5. The "generator-based" main(), driven by run_until_complete on
// get_event_loop(); it returns 123.
void run_generator_based();
// 2.4 Two workers sharing a Queue: one waits on get(), the other puts 3.
void run_queue_workers();
// 3.4.1 call_soon(hello_world) + run_forever: "Hello World".
void run_call_soon_hello();
// 3.4.1 call_later: display_date every 0.1 s for 0.5 s.
void run_call_later_dates();
// 3.4.6 add_reader on a socketpair: "Received: abc".
void run_add_reader_socketpair();
// 4.(4) gather of three factorial tasks.
void run_gather_factorials();
// 4.(6) wait_for on an eternity: "timeout!".
void run_wait_for_timeout();
// 4.(7) wait({task}): the task is in `done`.
void run_wait_example();
// 4.(5) shield: cancelling the awaiting task leaves the inner one running.
void run_shield_example();
// 4.(8) as_completed: results in completion order.
void run_as_completed_example();
// 2.2 The TCP echo server and client, in one run.
void run_echo_tcp();
// The same over TLS (//tls), with a CA and server certificate made for the run.
void run_echo_tls();
// 3.6 start_server + serve_forever, cancelled after one client.
void run_serve_forever_example();
// getaddrinfo("localhost") and getnameinfo with c-ares on the loop (//dns).
void run_resolve_localhost();
// 3.4.8 run_in_executor: the default pool, a custom thread pool and a
// process pool (cpu_bound).
void run_run_in_executor_pools();
// 4.(9) run_coroutine_threadsafe from a plain thread: a result, a timeout
// that cancels the task, an exception.
void run_run_coroutine_threadsafe_example();
// contextvars: a request id set by a server handler, in the log lines of
// the tasks and the worker thread the request touches.
void run_request_id_context();
// The gRPC bridge demo (//examples/grpc): a gRPC server with asyncio
// coroutine handlers and an asyncio client, on loopback.
void run_grpc_demo();
// 2.3 create_subprocess_shell + communicate: `ls /pythonfiles`, `echo hello`.
void run_subprocess_examples();

// All of the above, in that order, each under a "== ... ==" header.
void run_tour();

}  // namespace asyncio_examples
