#include "examples/grpc/grpc_bridge.h"

#include <cxxabi.h>

#include <cstdlib>
#include <typeinfo>

namespace asyncio_grpc {

namespace {

std::string type_name(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string result = (status == 0 && name != nullptr) ? name : type.name();
  std::free(name);
  return result;
}

std::string describe(const grpc::Status& status) {
  return "RPC failed with status " + std::to_string(static_cast<int>(status.error_code())) + ": " +
         status.error_message();
}

}  // namespace

RpcError::RpcError(grpc::Status status) : std::runtime_error(describe(status)), status_(status) {}

grpc::Status status_from_exception(std::exception_ptr exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const RpcError& e) {
    return e.status();
  } catch (const asyncio::CancelledError&) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "handler cancelled");
  } catch (const asyncio::TimeoutError& e) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, e.what());
  } catch (const std::invalid_argument& e) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e.what());
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, type_name(typeid(e)) + ": " + e.what());
  } catch (...) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, "unknown exception");
  }
}

grpc::Status status_of(asyncio::concurrent::Future<grpc::Status>& done) {
  try {
    return done.result();
  } catch (...) {
    return status_from_exception(std::current_exception());
  }
}

std::exception_ptr exception_for(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return std::make_exception_ptr(
        asyncio::TimeoutError("deadline exceeded: " + status.error_message()));
  }
  return std::make_exception_ptr(RpcError(status));
}

}  // namespace asyncio_grpc
