#!/usr/bin/env python3
"""Latency of fresh-connection requests through the proxy while the daemon is
upgraded in place, against the same load without upgrades (baseline), in one
run. Usage: load.py <rollbridge binary> <config> <proxy port> <upgrades>"""
import socket
import statistics
import subprocess
import sys
import threading
import time

BINARY, CONFIG, PORT, UPGRADES = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def phase(upgrade):
    latencies, failures, stop = [], [0], [False]

    def client():
        while not stop[0]:
            started = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
                    s.sendall(b"GET /release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[0] += 1
            except OSError:
                failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
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
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies), failures[0], statistics.median(latencies) * 1000, p99, latencies[-1] * 1000


for name, upgrade in [("baseline", False), ("upgrades", True), ("baseline", False), ("upgrades", True)]:
    count, failed, p50, p99, worst = phase(upgrade)
    print(f"{name:9} requests {count:6} failed {failed} p50 {p50:.2f} ms p99 {p99:.2f} ms max {worst:.2f} ms")
