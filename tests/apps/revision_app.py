#!/usr/bin/python3
"""A small HTTP app for the local-process pack's tests and the quick start.

It answers `GET /` with its revision id (ENVPACK_REVISION, or REVISION),
`GET /healthz` with 200 (500 when FAIL_HEALTH is set), and `GET /slow?ms=N`
after N milliseconds. On SIGTERM it stops accepting and exits once the
requests in flight are answered. CRASH=1 makes it fail on start.

`GET /metrics` answers in Prometheus's text exposition format: the counter
`app_requests_total{code="..."}` counts every request answered except
`/healthz` and `/metrics` themselves, by status code (`200` and `500` are
there from the start, at 0).

Failing users on purpose (never the health check, never `/metrics`):

- FAIL_REQUESTS=1: every request answers 500 (a revision that passes its
  health check yet fails users);
- FAIL_RATIO=0.3: that fraction of requests answers 500, drawn at random
  (Python's `random`, seeded with FAIL_SEED when it is set, so a run can be
  repeated);
- FAIL_WHEN_FILE=PATH (relative to the process's working directory, or
  absolute): the failures above apply only while that file exists; without
  FAIL_REQUESTS or FAIL_RATIO, every request fails while it exists. A test
  turns a running revision bad, and good again, by creating and removing it.
"""

import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

REVISION = os.environ.get("ENVPACK_REVISION") or os.environ.get("REVISION", "unknown")
FAIL_REQUESTS = bool(os.environ.get("FAIL_REQUESTS"))
FAIL_WHEN_FILE = os.environ.get("FAIL_WHEN_FILE") or None

# Requests answered, by status code; guarded by LOCK (one thread per request).
LOCK = threading.Lock()
COUNTS = {200: 0, 500: 0}


def fail_ratio():
    """FAIL_RATIO as a number in [0, 1], or None when it is not set."""
    text = os.environ.get("FAIL_RATIO")
    if not text:
        return None
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        print(f"revision {REVISION}: FAIL_RATIO={text!r} is not a number from 0 to 1", file=sys.stderr, flush=True)
        sys.exit(2)
    return ratio


def seeded():
    seed = os.environ.get("FAIL_SEED")
    if seed is None:
        return random.Random()
    try:
        return random.Random(int(seed))
    except ValueError:
        return random.Random(seed)


FAIL_RATIO = fail_ratio()
RANDOM = seeded()  # guarded by LOCK


def failing():
    """Whether this request answers 500 (see the module's docstring)."""
    if FAIL_WHEN_FILE is not None and not os.path.exists(FAIL_WHEN_FILE):
        return False
    if FAIL_REQUESTS:
        return True
    if FAIL_RATIO is not None:
        with LOCK:
            return RANDOM.random() < FAIL_RATIO
    return FAIL_WHEN_FILE is not None


def metrics():
    with LOCK:
        counts = sorted(COUNTS.items())
    lines = [
        "# HELP app_requests_total Requests answered, by status code (not /healthz or /metrics).",
        "# TYPE app_requests_total counter",
    ]
    lines += [f'app_requests_total{{code="{code}"}} {n}' for code, n in counts]
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            if os.environ.get("FAIL_HEALTH"):
                print(f"health check failing on purpose (revision {REVISION})", file=sys.stderr, flush=True)
                return self.answer(500, "unhealthy\n")
            return self.answer(200, "ok\n")
        if url.path == "/metrics":
            return self.answer(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
        status = self.serve(url)
        with LOCK:
            COUNTS[status] = COUNTS.get(status, 0) + 1

    def serve(self, url):
        """Answers a user's request; returns the status it answered."""
        if failing():
            self.answer(500, REVISION + "\n")
            return 500
        if url.path == "/slow":
            ms = int(parse_qs(url.query).get("ms", ["1000"])[0])
            # Tests wait for this line (in the process's stderr log) to know
            # the request is in flight.
            print(f"slow request started ({REVISION})", file=sys.stderr, flush=True)
            time.sleep(ms / 1000)
        self.answer(200, REVISION + "\n")
        return 200

    def answer(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
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
