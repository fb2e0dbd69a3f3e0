// The pieces of create_connection's happy eyeballs (RFC 8305) that tests
// look at directly.
#pragma once

#include <cstddef>
#include <vector>

#include "loop/loop.h"

namespace asyncio::transports_internal {

// asyncio's _interleave_addrinfos: groups the addresses by family (in the
// order each family first appears), then takes `first_family_count` - 1
// from the first family and alternates between families for the rest.
// Within a family the resolver's order is kept.
std::vector<AddrInfo> interleave_addrinfos(const std::vector<AddrInfo>& infos,
                                           size_t first_family_count);

}  // namespace asyncio::transports_internal
