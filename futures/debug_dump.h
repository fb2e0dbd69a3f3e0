// Task dumps of a running program, taken from outside the loops: Python
// 3.14's `python -m asyncio ps PID` / `pstree PID` for a C++ process.
//
//   asyncio::enable_task_dump(SIGUSR1);   // kill -USR1 PID: every loop's
//                                         // task tree on stderr
//   ASYNCIO_DEBUG_SOCKET=1 ./server       // then: tools/asyncio_ps PID
//                                         //       tools/asyncio_ps --tree PID
//
// Nothing here costs anything until enabled: loops are found through the
// process-wide list of task registries, which is touched only when a loop
// gets its first task and when it is destroyed.
//
// Each loop formats its own tasks (format_tasks_table, format_task_tree) on
// its own thread, in a callback posted with call_soon_threadsafe; the
// requesting thread waits for the answers with a timeout. A loop whose
// thread is stuck in a callback (or a loop that is not running) cannot
// answer: it is listed as "not responding". Its tasks can still be read
// from memory with gdb, on the live process or on a core file:
//
//   gdb -p PID -x tools/gdb/asyncio_gdb.py -ex asyncio-tree
#pragma once

#include <chrono>
#include <string>

namespace asyncio {

enum class TaskDumpFormat {
  kTable,  // `python -m asyncio ps`: format_tasks_table
  kTree,   // `python -m asyncio pstree`: format_task_tree
};

// The tasks of every loop of the process that has had a task, each under a
// line naming the loop:
//
//   loop #1 at 0x5581e2a0 (thread 4242):
//   └── (T) main
//       └──  app::main()
//
// or, for a loop that did not answer within `timeout`:
//
//   loop #2 at 0x5581f000: not responding (stuck in a callback, or not
//   running); its tasks can be read with gdb: tools/gdb/asyncio_gdb.py
//
// Callable from any thread; the loop running on the calling thread, if any,
// is formatted directly.
std::string dump_all_tasks(TaskDumpFormat format = TaskDumpFormat::kTree,
                           std::chrono::milliseconds timeout = std::chrono::seconds(1));

// From now on, signal `signo` makes a dump (dump_all_tasks, as a tree) be
// written to `fd` (stderr by default) without stopping the program. The
// signal handler only writes a byte to a pipe (async-signal-safe); a thread
// started here takes the dump. Calling it again adds another signal (the
// last call's `fd` is used). Throws std::system_error if the handler or the
// thread cannot be set up.
void enable_task_dump(int signo, int fd = 2);

// Serves dumps on a Unix socket at `path` ("" for /tmp/asyncio-<pid>.sock),
// from a thread started here, for tools/asyncio_ps: a client sends "ps\n" or
// "pstree\n" and reads the dump until the server closes the connection. Only
// the process's own user (and root) may ask. The socket file is removed at
// exit. Returns the path; a second call returns the first one's path.
// Throws std::system_error if the socket cannot be made.
//
// asyncio::run and Runner call it when the environment variable
// ASYNCIO_DEBUG_SOCKET is set: "1" for the default path, anything else (but
// "0" or "") for the path itself.
std::string enable_debug_socket(const std::string& path = "");

// ---------------------------------------------------------------------------
// Implementation details

namespace futures_internal {
// Runner's check of ASYNCIO_DEBUG_SOCKET, once per process; a socket that
// cannot be made is reported on stderr and the program goes on without it.
void enable_debug_socket_from_environment() noexcept;
}  // namespace futures_internal

}  // namespace asyncio
