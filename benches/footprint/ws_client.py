#!/usr/bin/env python3
"""Opens COUNT idle WebSockets to 127.0.0.1:PORT and holds them.

Usage: ws_client.py PORT COUNT
Prints `open <n>` once every handshake got its 101, then waits for a line (or EOF)
on stdin, prints `held <n> dropped <d>` (d: sessions the far side closed while
they were held) and closes them all. Exits 1 when a handshake fails.
"""
import asyncio
import base64
import os
import sys

CONNECT_AT_ONCE = int(os.environ.get("FOOTPRINT_CONNECT_AT_ONCE", "100"))


async def open_one(port, gate):
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head.splitlines()[0]!r}")
        return reader, writer


async def watch(reader):
    """Returns True when the far side closed the session."""
    try:
        return not await reader.read(1)
    except ConnectionError:
        return True


async def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    results = await asyncio.gather(*(open_one(port, gate) for _ in range(count)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    sessions = [r for r in results if not isinstance(r, BaseException)]
    if failures:
        print(f"{len(failures)} of {count} handshakes failed, first: {failures[0]!r}",
              file=sys.stderr, flush=True)
        for _, writer in sessions:
            writer.close()
        sys.exit(1)
    watchers = [asyncio.ensure_future(watch(reader)) for reader, _ in sessions]
    print(f"open {len(sessions)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    dropped = sum(1 for w in watchers if w.done() and w.result())
    print(f"held {len(sessions)} dropped {dropped}", flush=True)
    for watcher in watchers:
        watcher.cancel()
    for _, writer in sessions:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
