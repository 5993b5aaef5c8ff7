#!/usr/bin/python3
"""A small HTTP app for the local-process pack's tests and the quick start.

It answers `GET /` with its revision id (ENVPACK_REVISION, or REVISION),
`GET /healthz` with 200 (500 when FAIL_HEALTH is set), and `GET /slow?ms=N`
after N milliseconds. FAIL_REQUESTS=1 makes every request but the health
check answer 500 (a revision that passes its health check yet fails users). On SIGTERM it stops accepting and exits once the
requests in flight are answered. CRASH=1 makes it fail on start.
"""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

REVISION = os.environ.get("ENVPACK_REVISION") or os.environ.get("REVISION", "unknown")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            if os.environ.get("FAIL_HEALTH"):
                print(f"health check failing on purpose (revision {REVISION})", file=sys.stderr, flush=True)
                return self.answer(500, "unhealthy\n")
            return self.answer(200, "ok\n")
        if os.environ.get("FAIL_REQUESTS"):
            return self.answer(500, REVISION + "\n")
        if url.path == "/slow":
            ms = int(parse_qs(url.query).get("ms", ["1000"])[0])
            # Tests wait for this line (in the process's stderr log) to know
            # the request is in flight.
            print(f"slow request started ({REVISION})", file=sys.stderr, flush=True)
            time.sleep(ms / 1000)
        return self.answer(200, REVISION + "\n")

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    if os.environ.get("CRASH"):
        print(f"revision {REVISION}: crashing on start, as CRASH asks", file=sys.stderr, flush=True)
        sys.exit(3)
    port = int(os.environ["PORT"])
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        print(f"revision {REVISION}: cannot listen on 127.0.0.1:{port}: {e}", file=sys.stderr, flush=True)
        sys.exit(4)
    server.daemon_threads = False  # server_close() waits for requests in flight

    def on_term(signum, frame):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"revision {REVISION} listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    print(f"revision {REVISION} stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
