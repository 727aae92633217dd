#!/usr/bin/env python3
"""Latency of requests through the proxy while the daemon is upgraded in place,
against the same load without upgrades (baseline), in one run: four clients on
fresh connections and two on keep-alive connections (which must go on across
every upgrade: a connection the proxy closes counts as a reconnect).
Usage: load.py <rollbridge binary> <config> <proxy port> <upgrades>"""
import http.client
import socket
import statistics
import subprocess
import sys
import threading
import time

BINARY, CONFIG, PORT, UPGRADES = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


class Tally:
    def __init__(self):
        self.latencies, self.failures, self.reconnects = [], 0, 0

    def line(self, name, kind):
        latencies = sorted(self.latencies)
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        return (
            f"{name:9} {kind:10} requests {len(latencies):6} failed {self.failures} "
            f"p50 {statistics.median(latencies) * 1000:.2f} ms p99 {p99:.2f} ms "
            f"max {latencies[-1] * 1000:.2f} ms"
        )


def fresh_client(tally, stop):
    while not stop[0]:
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
                s.sendall(b"GET /release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.failures += 1
        except OSError:
            tally.failures += 1


def keep_alive_client(tally, stop):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    while not stop[0]:
        started = time.perf_counter()
        try:
            connection.request("GET", "/release")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.failures += 1
            if response.will_close:
                tally.reconnects += 1
                connection.close()
        except (OSError, http.client.HTTPException):
            # Closed between requests: a new connection, as clients do.
            tally.reconnects += 1
            connection.close()
    connection.close()


def phase(upgrade):
    fresh, keep_alive, stop = Tally(), Tally(), [False]
    threads = [threading.Thread(target=fresh_client, args=(fresh, stop)) for _ in range(4)]
    threads += [threading.Thread(target=keep_alive_client, args=(keep_alive, stop)) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    for _ in range(UPGRADES):
        if upgrade:
            subprocess.run([BINARY, "upgrade", "-c", CONFIG], check=True, capture_output=True)
        time.sleep(0.3)
    stop[0] = True
    for thread in threads:
        thread.join()
    return fresh, keep_alive


for name, upgrade in [("baseline", False), ("upgrades", True), ("baseline", False), ("upgrades", True)]:
    fresh, keep_alive = phase(upgrade)
    print(fresh.line(name, "fresh"))
    print(keep_alive.line(name, "keep-alive") + f" reconnects {keep_alive.reconnects}")
