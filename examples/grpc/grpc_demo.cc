// bazel run //examples/grpc:grpc_demo: the gRPC bridge demo (server and
// client on loopback, in one process).
namespace asyncio_examples {
void run_grpc_demo();
}  // namespace asyncio_examples

int main() {
  asyncio_examples::run_grpc_demo();
  return 0;
}
