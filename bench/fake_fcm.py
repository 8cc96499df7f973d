"""A fast, dumb stand-in for FCM v1 for benchmarks, in its own process.

It answers token requests and sends at once (or, under ``/latency/<ms>/``, after that
many milliseconds, without a thread per request), checks nothing and keeps connections
alive: just enough HTTP/1.1 (Content-Length, keep-alive) on asyncio, so that it is never
the bottleneck and its CPU is not counted against the client measured. Not the sandbox:
the sandbox verifies JWTs and schemas and stores messages, which would make *it* the
thing measured.

    with FakeFcm(latency_ms=50) as fake:   # fake.url: use as FCM_API_URL; f"{fake.url}/token"
        ...
        fake.stats()                        # {"token": n, "send": n}

    FakeFcm(record_project="p"): sends to project "p" are kept with their arrival time,
    ``fake.recorded()`` returns them (bench/fairness.py times pushes to FCM with it).

Standard library only: the firebase-admin yardstick's venv imports it too.
``python bench/fake_fcm.py [--port N]`` serves until interrupted and prints its port.
"""

import asyncio
import json
import subprocess
import sys
import time
import urllib.request


class _Protocol(asyncio.Protocol):
    stats = {"token": 0, "send": 0}
    record_project = ""  # sends to this project are kept: (arrival time, body), at /recorded
    recorded: list = []

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length, close = 0, False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            if self.record_project and f"/projects/{self.record_project}/" in path:
                self.recorded.append((time.time(), body.decode("utf-8", "replace")))
            self.answer(method, path, close)

    def answer(self, method, path, close):
        delay = 0.0
        if path.startswith("/latency/"):
            _, _, ms, path = path.split("/", 3)
            delay, path = float(ms) / 1000, "/" + path
        if path.endswith("/token"):
            self.stats["token"] += 1
            body = b'{"access_token":"ya29.fake-token","expires_in":3600,"token_type":"Bearer"}'
        elif path.endswith("/messages:send"):
            self.stats["send"] += 1
            project = path.split("/")[3].encode()
            body = b'{"name":"projects/%s/messages/0:%d"}' % (project, self.stats["send"])
        elif path == "/recorded":
            body = json.dumps(self.recorded).encode()
        elif path == "/stats":
            body = json.dumps(self.stats).encode()
            if method == "POST":
                _Protocol.stats = {"token": 0, "send": 0}
        else:
            body = b"{}"
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
            b"Content-Length: %d\r\n%s\r\n%s" % (len(body), b"Connection: close\r\n" if close else b"", body)
        )
        if delay:
            asyncio.get_running_loop().call_later(delay, self.write, response, close)
        else:
            self.write(response, close)

    def write(self, response, close):
        if not self.transport.is_closing():
            self.transport.write(response)
            if close:
                self.transport.close()


def serve(port: int = 0, *, record_project: str = "") -> None:
    _Protocol.record_project = record_project

    async def main():
        server = await asyncio.get_running_loop().create_server(_Protocol, "127.0.0.1", port, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


def fake_stats(base_url: str, *, reset: bool = False) -> dict:
    """Tokens issued and messages sent so far (and, with reset, start counting again)."""
    request = urllib.request.Request(
        f"{base_url}/stats", method="POST" if reset else "GET", data=b"" if reset else None
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class FakeFcm:
    """The fake in a child process. ``url`` carries the added latency; ``base`` does not."""

    def __init__(self, *, latency_ms: float = 0.0, record_project: str = ""):
        self.latency_ms = latency_ms
        self.record_project = record_project

    def __enter__(self):
        command = [sys.executable, __file__]
        if self.record_project:
            command += ["--record-project", self.record_project]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{int(self.process.stdout.readline())}"
        self.url = f"{self.base}/latency/{self.latency_ms:g}" if self.latency_ms else self.base
        return self

    def stats(self, *, reset: bool = False) -> dict:
        return fake_stats(self.base, reset=reset)

    def recorded(self) -> list[tuple[float, str]]:
        """(arrival time, request body) of every send to ``record_project`` so far."""
        with urllib.request.urlopen(f"{self.base}/recorded", timeout=5) as response:
            return [tuple(row) for row in json.loads(response.read())]

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--record-project", default="", help="keep the sends to this project (/recorded)")
    args = parser.parse_args()
    serve(args.port, record_project=args.record_project)
