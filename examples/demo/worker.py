#!/usr/bin/env python3
"""The demo background worker: prints a heartbeat until asked to stop."""
import os
import signal
import sys
import time

running = True


def stop(_signum, _frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
name = f"{os.environ.get('ROLLBRIDGE_PROCESS_ID')}#{os.environ.get('ROLLBRIDGE_REPLICA_INDEX')}"
while running:
    print(f"worker {name} of release {os.environ.get('ROLLBRIDGE_RELEASE_ID')} working", flush=True)
    time.sleep(1)
print(f"worker {name} finished its job and exits", flush=True)
sys.exit(0)
