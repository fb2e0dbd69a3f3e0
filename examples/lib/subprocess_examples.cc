// Running a shell command (asyncio docs, Subprocesses):
//
//   async def run(cmd):
//       proc = await asyncio.create_subprocess_shell(
//           cmd,
//           stdout=asyncio.subprocess.PIPE,
//           stderr=asyncio.subprocess.PIPE)
//
//       stdout, stderr = await proc.communicate()
//
//       print(f'[{cmd!r} exited with {proc.returncode}]')
//       if stdout:
//           print(f'[stdout]\n{stdout.decode()}')
//       if stderr:
//           print(f'[stderr]\n{stderr.decode()}')
//
//   asyncio.run(run('ls /pythonfiles'))
//
// run again with 'echo hello', for a command that writes to stdout.
#include <iostream>
#include <string>

#include "examples/lib/examples.h"
#include "futures/futures.h"
#include "subprocess/subprocess.h"

namespace asyncio_examples {
namespace {

asyncio::Coro<void> run(std::string cmd) {
  asyncio::SubprocessOptions options;
  options.stdout_ = asyncio::subprocess::PIPE;
  options.stderr_ = asyncio::subprocess::PIPE;
  asyncio::Process proc = co_await asyncio::create_subprocess_shell(cmd, options);

  auto [stdout_data, stderr_data] = co_await proc.communicate();

  std::cout << "['" << cmd << "' exited with " << *proc.returncode() << "]\n";
  if (!stdout_data.empty()) std::cout << "[stdout]\n" << stdout_data << "\n";
  if (!stderr_data.empty()) std::cout << "[stderr]\n" << stderr_data << "\n";
}

}  // namespace

void run_subprocess_examples() {
  asyncio::run(run("ls /pythonfiles"));
  asyncio::run(run("echo hello"));
  std::cout.flush();
}

}  // namespace asyncio_examples
