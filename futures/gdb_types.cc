// Debug information for tools/gdb/asyncio_gdb.py. A binary built without -g
// (Bazel's fastbuild) has no DWARF description of the structures the gdb
// commands walk; linking //futures:gdb_types puts them in, from this one
// file, compiled with -g. GCC describes a class with virtual functions only
// where its vtable is emitted, unless -femit-class-debug-always.
#include "futures/futures.h"
#include "futures/internal/call_graph_nodes.h"
#include "futures/internal/core.h"

namespace asyncio::futures_internal {

// One pointer to each type asyncio_gdb.py reads.
struct GdbTypes {
  TaskRegistry* registry;
  TaskCore* task;
  Promise<void>* promise;
  FutureStateBase* future;
  CallbackNode* callback;
  WakeNode* wake;
  AwaitedByNode* awaited_by;
  GatherChildNode* gather_child;
  WaitNode* wait;
  GeneratorControl* generator;
  Runnable* runnable;
};

[[gnu::used]] GdbTypes gdb_types{};

}  // namespace asyncio::futures_internal
