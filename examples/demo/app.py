#!/usr/bin/env python3
"""The demo web app: answers every request with the release that served it.

rollbridge starts it with ROLLBRIDGE_PORT (the port to listen on) and
ROLLBRIDGE_RELEASE_ID in the environment. /ping is the health check.
"""
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = os.environ.get("ROLLBRIDGE_RELEASE_ID", "unknown")
PORT = int(os.environ["ROLLBRIDGE_PORT"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n" if self.path == "/ping" else f"hello from release {RELEASE}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True


def stop(_signum, _frame):
    # Finish the request in hand, then exit: rollbridge has already moved new
    # traffic to the next release and waited for this one's connections.
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, stop)
print(f"release {RELEASE} listening on {PORT}", flush=True)
server.serve_forever()
sys.exit(0)
