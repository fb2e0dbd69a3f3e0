// Everything of asyncio for C++ in one include. Prefer the facade of each
// package you use (loop/loop.h, futures/futures.h, ...) and depend on its
// target only; this is for programs that want it all.
#pragma once

#include "dns/dns.h"
#include "executors/executors.h"
#include "futures/futures.h"
#include "loop/loop.h"
#include "queues/queues.h"
#include "shards/shards.h"
#include "streams/streams.h"
#include "subprocess/subprocess.h"
#include "sync/sync.h"
#include "tls/tls.h"
#include "transports/transports.h"
