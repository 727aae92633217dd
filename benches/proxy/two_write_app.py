"""A release app that writes its response head and body separately, Nagle on:
Python's http.server with HTTP/1.1 keep-alive (end_headers() sends the head,
then the handler writes the body). Usage: two_write_app.py PORT"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # first write: the head
        self.wfile.write(body)  # second write: held by Nagle until the head is ACKed

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
