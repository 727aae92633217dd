#!/usr/bin/env python3
"""Sends requests through the rollbridge proxy until a stop file appears, then
prints a JSON summary. Half the clients reuse one keep-alive connection, half
open a fresh connection per request, like browsers and nginx upstreams do."""
import http.client
import json
import os
import sys
import threading
import time

port, stop_file, progress_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
totals = {"ok": 0, "failed": 0, "byRelease": {}, "errors": []}


def record(release, error=None):
    with lock:
        if error is None:
            totals["ok"] += 1
            totals["byRelease"][release] = totals["byRelease"].get(release, 0) + 1
        else:
            totals["failed"] += 1
            if len(totals["errors"]) < 5:
                totals["errors"].append(error)


def client(keep_alive):
    conn = None
    while not os.path.exists(stop_file):
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read().decode().strip()
            if response.status == 200:
                record(body.rsplit(" ", 1)[-1])
            else:
                record(None, f"HTTP {response.status}: {body}")
        except Exception as error:  # every failure counts, none is hidden
            record(None, repr(error))
            conn = None
        if not keep_alive and conn is not None:
            conn.close()
            conn = None
        time.sleep(0.005)


threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
for thread in threads:
    thread.start()
while not os.path.exists(stop_file):
    with lock:
        snapshot = dict(totals, byRelease=dict(totals["byRelease"]))
    with open(progress_file, "w") as handle:
        json.dump(snapshot, handle)
    time.sleep(0.2)
for thread in threads:
    thread.join()
print(json.dumps(totals))
