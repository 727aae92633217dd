"""Helpers shared by the Python benchmark drivers (footprint, supervision)."""

import time


def wait_for(check, what, timeout=30.0):
    """Polls `check` every 20 ms until it returns something truthy; returns it.

    Raises RuntimeError naming `what` when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
