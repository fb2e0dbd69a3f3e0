#!/usr/bin/env python3
"""Echo server on Python asyncio or uvloop, with a Protocol or with streams.

    python3 echo_server.py [--loop asyncio|uvloop] [--mode protocol|streams] [port]

Listens on 127.0.0.1 (port 0, the default: any free port), prints the port
as stdout's first line and serves until killed. The same two servers as
echo_protocol_server.cc and echo_streams_server.cc, for echo_compare.sh.
"""

import argparse
import asyncio
import sys


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_streams(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(mode, port):
    loop = asyncio.get_running_loop()
    if mode == "protocol":
        server = await loop.create_server(EchoProtocol, "127.0.0.1", port)
    else:
        server = await asyncio.start_server(echo_streams, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--mode", choices=["protocol", "streams"], default="protocol")
    parser.add_argument("port", nargs="?", type=int, default=0)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    try:
        asyncio.run(serve(args.mode, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
