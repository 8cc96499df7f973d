"""A fast, dumb stand-in for FCM v1 for benchmarks: answers at once (or after a fixed
latency), checks nothing, keeps connections alive. Not the sandbox: the sandbox verifies
JWTs and schemas and stores messages, which would make *it* the thing measured."""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # read in __init__'s listen(): a class attribute, not set later


class FakeFcm:
    def __init__(self, *, latency_ms: float = 0.0, host: str = "127.0.0.1", port: int = 0):
        self.latency = latency_ms / 1000
        self.sent = 0
        self.token_requests = 0
        counter = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Google's front ends
            # Headers and body leave in two writes; without TCP_NODELAY the client's
            # delayed ACK holds the second for ~40 ms, and the fake measures only that.
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.endswith("/token"):
                    fake.token_requests += 1
                    body = {"access_token": "ya29.fake", "expires_in": 3600, "token_type": "Bearer"}
                else:
                    if fake.latency:
                        time.sleep(fake.latency)
                    project = self.path.split("/")[3]
                    body = {"name": f"projects/{project}/messages/{next(counter)}"}
                    fake.sent += 1
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = _Server((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9199)
    parser.add_argument("--latency-ms", type=float, default=0)
    args = parser.parse_args()
    with FakeFcm(port=args.port, latency_ms=args.latency_ms) as fake:
        print(f"fake FCM at {fake.url}", flush=True)
        threading.Event().wait()
