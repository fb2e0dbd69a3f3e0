// The main() of every single-example binary: ASYNCIO_EXAMPLE names the
// function (see examples/BUILD).
#include "examples/lib/examples.h"

#ifndef ASYNCIO_EXAMPLE
#error "ASYNCIO_EXAMPLE must name an example function"
#endif

int main() {
  asyncio_examples::ASYNCIO_EXAMPLE();
  return 0;
}
