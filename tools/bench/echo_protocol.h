// The benchmarks' Protocol echo: data_received -> transport->write(data).
#pragma once

#include <exception>
#include <memory>
#include <string_view>

#include "transports/transports.h"

namespace asyncio_bench {

// A protocol that keeps its transport while connected.
class ConnectedProtocol : public asyncio::Protocol {
 public:
  void connection_made(std::shared_ptr<asyncio::BaseTransport> transport) override {
    transport_ = std::static_pointer_cast<asyncio::Transport>(transport);
  }
  void connection_lost(std::exception_ptr exc) override {
    (void)exc;
    transport_.reset();
  }

 protected:
  std::shared_ptr<asyncio::Transport> transport_;
};

class EchoProtocol final : public ConnectedProtocol {
 public:
  void data_received(std::string_view data) override { transport_->write(data); }
};

}  // namespace asyncio_bench
