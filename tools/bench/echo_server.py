#!/usr/bin/env python3
"""Echo server on Python asyncio or uvloop, with a Protocol or with streams.

    python3 echo_server.py [--loop asyncio|uvloop]
                           [--mode protocol|streams|protocol-lines|streams-lines]
                           [--tls CERT KEY] [port]

Listens on 127.0.0.1 (port 0, the default: any free port), prints the port
as stdout's first line and serves until killed. The same two servers as
echo_protocol_server.cc and echo_streams_server.cc, for echo_compare.sh.
--tls serves TLS (ssl= of create_server / start_server) with the PEM
certificate chain CERT and key KEY. The -lines modes answer each line
with one write (request/response, for pipelined load: echo_load --pipeline).
"""

import argparse
import asyncio
import ssl
import sys


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class LinesProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.partial = b""

    def data_received(self, data):
        data = self.partial + data
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self.transport.write(data[start : end + 1])
            start = end + 1
        self.partial = data[start:]


async def echo_lines(reader, writer):
    try:
        while True:
            writer.write(await reader.readuntil(b"\n"))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


READ_SIZE = 65536


async def echo_streams(reader, writer):
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def serve(mode, port, ssl_context):
    loop = asyncio.get_running_loop()
    if mode in ("protocol", "protocol-lines"):
        factory = EchoProtocol if mode == "protocol" else LinesProtocol
        server = await loop.create_server(factory, "127.0.0.1", port, ssl=ssl_context)
    else:
        handler = echo_streams if mode == "streams" else echo_lines
        server = await asyncio.start_server(handler, "127.0.0.1", port, ssl=ssl_context)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--mode", choices=["protocol", "streams", "protocol-lines", "streams-lines"], default="protocol")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--read-size", type=int, default=65536, help="what each streams read() asks for")
    parser.add_argument("port", nargs="?", type=int, default=0)
    args = parser.parse_args()
    global READ_SIZE
    READ_SIZE = args.read_size
    ssl_context = None
    if args.tls:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(*args.tls)
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    try:
        asyncio.run(serve(args.mode, args.port, ssl_context))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
