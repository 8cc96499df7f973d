"""A misbehaving network between Herald and the FCM sandbox, for fault tests.

    with FaultyFcm(sandbox.url, plan=first(20, Answer(503))) as proxy:
        settings.FCM_API_URL = proxy.url

``FaultyFcm`` is an HTTP/1.1 keep-alive proxy on a free port of 127.0.0.1. Token
requests always pass through; for each ``messages:send`` the plan, called with the
request's number (from 0) and its tracking token, picks what happens:

* ``None``: forwarded to the sandbox, its answer relayed;
* ``Answer(503)``, ``Answer(429, retry_after=2)``: answered with Google's error body;
  the sandbox never sees the request;
* ``Hang(seconds)``: held without an answer (past the client's timeout), then the
  connection is closed; the sandbox never sees it;
* ``CLOSE``: the connection is closed at once, no answer; the sandbox never sees it;
* ``CLOSE_AFTER_FORWARDING``: forwarded (the sandbox delivers it), then the connection is
  closed before the answer: the sender cannot know the message went out.

``proxy.faults`` records what was done to whom: [(tracking_token, fault name)].
"""

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import urllib3

from fcm_sandbox.server import HangsUpConnections

ERROR_STATUS = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
ERROR_CODE = {400: "INVALID_ARGUMENT", 429: "QUOTA_EXCEEDED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: int | None = None

    @property
    def name(self) -> str:
        return f"answer {self.status}"


@dataclass(frozen=True)
class Hang:
    seconds: float

    @property
    def name(self) -> str:
        return "hang"


@dataclass(frozen=True)
class Close:
    forward_first: bool = False

    @property
    def name(self) -> str:
        return "close after forwarding" if self.forward_first else "close"


CLOSE = Close()
CLOSE_AFTER_FORWARDING = Close(forward_first=True)
Fault = Answer | Hang | Close
Plan = Callable[[int, str], Fault | None]


def first(count: int, fault: Fault) -> Plan:
    """A burst: the first `count` sends meet `fault`, the rest go through."""
    return lambda n, token: fault if n < count else None


def every(nth: int, fault: Fault, *, until: int | None = None) -> Plan:
    """Every `nth` send (of the first `until`) meets `fault`."""
    return lambda n, token: fault if n % nth == 0 and (until is None or n < until) else None


class FaultyFcm:
    def __init__(self, upstream: str, *, plan: Plan):
        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.faults: list[tuple[str, str]] = []
        self.sends = 0
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(maxsize=64, retries=False, timeout=urllib3.Timeout(30))
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="faulty-fcm", daemon=True
        )

    def __enter__(self) -> "FaultyFcm":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.hang_up()
        self._http.clear()

    def faulted(self, name: str) -> set[str]:
        """The tracking tokens whose sends met the named fault."""
        return {token for token, fault in self.faults if fault == name}

    def _decide(self, token: str) -> Fault | None:
        with self._lock:
            n = self.sends
            self.sends += 1
            fault = self.plan(n, token)
            if fault is not None:
                self.faults.append((token, fault.name))
        return fault

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = None
                if self.path.endswith(":send"):
                    fault = proxy._decide(_tracking_token(body))
                if isinstance(fault, Answer):
                    return self._answer(fault)
                if isinstance(fault, Hang):
                    time.sleep(fault.seconds)
                    return self._drop()
                if isinstance(fault, Close) and not fault.forward_first:
                    return self._drop()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = proxy._http.request("POST", proxy.upstream + self.path, body=body, headers=headers)
                if isinstance(fault, Close):
                    return self._drop()
                self._reply(upstream.status, upstream.data, upstream.headers)

            def _answer(self, fault: Answer):
                error = {
                    "code": fault.status,
                    "message": f"Injected {fault.status}.",
                    "status": ERROR_STATUS[fault.status],
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                            "errorCode": ERROR_CODE[fault.status],
                        }
                    ],
                }
                headers = {"Content-Type": "application/json; charset=UTF-8"}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                self._reply(fault.status, json.dumps({"error": error}).encode(), headers)

            def _reply(self, status, data, headers):
                self.send_response(status)
                for name in ("Content-Type", "Retry-After", "WWW-Authenticate"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drop(self):
                # A reset, not a polite FIN: what a crashed front end or a cut link looks like.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def log_message(self, *args):
                pass

        return Handler


def _tracking_token(body: bytes) -> str:
    try:
        return json.loads(body)["message"]["data"]["tracking_token"]
    except (ValueError, KeyError, TypeError):
        return ""


class _Server(HangsUpConnections, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def shutdown_request(self, request):
        try:
            super().shutdown_request(request)
        except OSError:
            pass
