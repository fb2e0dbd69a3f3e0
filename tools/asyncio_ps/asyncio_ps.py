#!/usr/bin/env python3
"""asyncio_ps: the tasks of a running C++ asyncio program.

Python 3.14's `python -m asyncio ps PID` / `pstree PID` for programs built on
this library:

    ASYNCIO_DEBUG_SOCKET=1 ./server &
    tools/asyncio_ps/asyncio_ps.py PID          # one row per task and awaiter
    tools/asyncio_ps/asyncio_ps.py --tree PID   # the await tree

It asks the program's debug socket (asyncio::enable_debug_socket, or
ASYNCIO_DEBUG_SOCKET in its environment when it started asyncio::run or a
Runner). Each loop answers from its own thread; a loop whose thread is stuck
in a callback is listed as "not responding": read its tasks with gdb
(tools/gdb/asyncio_gdb.py), which needs no help from the program.
"""

import argparse
import os
import socket
import sys


def socket_path(pid):
    """The socket the process serves: its ASYNCIO_DEBUG_SOCKET path, or the default."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        environ = []
    for item in environ:
        name, _, value = item.partition(b"=")
        if name == b"ASYNCIO_DEBUG_SOCKET" and value not in (b"", b"0", b"1"):
            return os.fsdecode(value)
    return f"/tmp/asyncio-{pid}.sock"


def ask(path, command, timeout):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="asyncio_ps",
        description="List the asyncio tasks of a running C++ process "
        "(python -m asyncio ps / pstree).",
    )
    parser.add_argument("pid", type=int, help="the process to ask")
    parser.add_argument(
        "--tree", action="store_true", help="print the await tree (pstree) instead of the table"
    )
    parser.add_argument("--socket", help="the debug socket's path (default: found from the PID)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)"
    )
    args = parser.parse_args(argv)
    path = args.socket or socket_path(args.pid)
    try:
        reply = ask(path, "pstree" if args.tree else "ps", args.timeout)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        print(
            f"asyncio_ps: process {args.pid} serves no debug socket at {path} ({e.strerror}).\n"
            "Start it with ASYNCIO_DEBUG_SOCKET=1 (or call asyncio::enable_debug_socket()); "
            "without its help, use gdb: tools/gdb/asyncio_gdb.py",
            file=sys.stderr,
        )
        return 1
    except OSError as e:
        print(f"asyncio_ps: {path}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
