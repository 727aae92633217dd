#!/usr/bin/env python3
"""Upstream app of the footprint benchmark (python3 standard library only).

One asyncio event loop, so it can hold thousands of idle WebSockets cheaply:
  GET /ping           200 "pong" (the health check)
  WebSocket upgrade   101, then the connection stays open and idle; frames the
                      client sends are read and dropped, a close ends it
  anything else       200 "ok"

Boot timing: when $FOOTPRINT_BOOT_LOG is set, one JSON line is appended to it
after the first /ping was answered:
  {"releaseId", "execNs", "listeningNs", "firstPingNs"}
execNs comes from $FOOTPRINT_EXEC_NS, which the launching shell command sets
just before `exec python3 ...`; the other two are taken here. All three are
CLOCK_REALTIME nanoseconds.
"""
import asyncio
import base64
import hashlib
import json
import os
import signal
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BOOT_LOG = os.environ.get("FOOTPRINT_BOOT_LOG")
EXEC_NS = os.environ.get("FOOTPRINT_EXEC_NS")
RELEASE = os.environ.get("ROLLBRIDGE_RELEASE_ID", "")

listening_ns = 0
first_ping_logged = False


def log_first_ping():
    global first_ping_logged
    if first_ping_logged or not BOOT_LOG:
        return
    first_ping_logged = True
    record = {
        "releaseId": RELEASE,
        "execNs": int(EXEC_NS) if EXEC_NS else None,
        "listeningNs": listening_ns,
        "firstPingNs": time.time_ns(),
    }
    with open(BOOT_LOG, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def response(status, body, extra=b""):
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


async def hold_websocket(reader):
    # Idle: wait for data or EOF; whatever arrives is dropped. Only a close frame
    # (opcode 8) or EOF ends the session.
    while True:
        chunk = await reader.read(4096)
        if not chunk or (chunk[0] & 0x0F) == 0x8:
            return


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            if "websocket" in headers.get("upgrade", "").lower():
                key = headers.get("sec-websocket-key", "").encode()
                accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                             b"connection: Upgrade\r\nsec-websocket-accept: " + accept + b"\r\n\r\n")
                await writer.drain()
                await hold_websocket(reader)
                return
            if path.split("?", 1)[0] == "/ping":
                writer.write(response(b"200 OK", b"pong"))
                await writer.drain()
                log_first_ping()
            else:
                writer.write(response(b"200 OK", b"ok"))
                await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    global listening_ns
    port = int(os.environ["ROLLBRIDGE_PORT"])
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    listening_ns = time.time_ns()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Exit at once: the idle WebSockets would otherwise keep asyncio waiting.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
