"""An nginx stand-in for FCM v1 over TLS, HTTP/1.1 and HTTP/2: independent of fake_fcm.py.

    with NginxFcm() as fcm:        # fcm.url: https://127.0.0.1:<port>; fcm.ca_file: its self-signed cert
        FCM_API_URL = fcm.url      # POST /v1/projects/<p>/messages:send -> 200 {"name": "…"}
        token_uri = f"{fcm.url}/token"
        slow = fcm.latency_url(50) # the same, 50 ms later (see below)
        fcm.sends()                # sends answered so far (from nginx's access log)

nginx (Debian's package: ``apt-get install -y nginx``) is started as a child process
with a config written to a temporary directory, beside a self-signed certificate for
127.0.0.1 and localhost made at run time with ``openssl``. It listens with ``ssl http2``,
so ALPN hands HTTP/2 to clients that offer it and HTTP/1.1 to the rest, and answers
every send with a fixed body via ``return 200``: no application code runs per request,
so a client measured against it is the only Python in the exchange. Keep-alive is
unbounded (``keepalive_requests``), so long runs do not reconnect. HTTP/2 allows
``max_streams`` concurrent streams per connection (default 128; Google's front ends
advertise 100): a client with more requests in flight must open more connections.

Added latency: nginx cannot wait before answering (``echo_sleep`` is not in Debian's
nginx), so ``latency_url(ms)`` is a path prefix ``/latency/<ms>/`` that nginx proxies,
over keep-alive HTTP/1.1 connections, to ``fake_fcm.py`` (asyncio, its own process),
which waits with ``call_later`` (no thread per request) and answers. TLS and HTTP/2 stay
nginx's; only the wait and the fixed answer come from the fake. The fake starts only if
a latency URL is asked for.

Standard library only (plus the ``nginx`` and ``openssl`` binaries), so that any venv
can import it. ``python bench/nginx_fcm.py [--latency-ms 50]`` serves until interrupted.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN_BODY = '{"access_token":"ya29.nginx-fake-token","expires_in":3600,"token_type":"Bearer"}'
SEND_BODY = '{"name":"projects/p/messages/0:$request_id"}'

CONFIG = """\
{user}
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format sends "$request_uri";
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    http2_max_concurrent_streams {max_streams};
    client_max_body_size 1m;
    upstream fake_fcm {{
        server 127.0.0.1:{fake_port};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2 reuseport backlog=4096;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        default_type application/json;

        location = /token {{
            return 200 '{token_body}';
        }}
        location ~ ^/v1/projects/[^/]+/messages:send$ {{
            access_log {tmp}/sends.log sends buffer=256k flush=1s;
            return 200 '{send_body}';
        }}
        location /latency/ {{
            access_log {tmp}/sends.log sends buffer=256k flush=1s;
            proxy_pass http://fake_fcm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
        location / {{
            return 404 '{{"error":{{"code":404,"status":"NOT_FOUND"}}}}';
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_certificate(directory: Path) -> None:
    """A self-signed EC certificate for 127.0.0.1 and localhost, valid for a day."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


class NginxFcm:
    """nginx serving a fake FCM v1 over TLS (HTTP/1.1 and HTTP/2), in a child process."""

    def __init__(self, *, workers: int = 1, max_streams: int = 128):
        self.workers = workers
        self.max_streams = max_streams
        self._fake = None

    def __enter__(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise SystemExit("nginx is not installed: apt-get install -y nginx")
        self.tmp = Path(tempfile.mkdtemp(prefix="herald-nginx-fcm-"))
        self.tmp.chmod(0o755)
        make_certificate(self.tmp)
        self.ca_file = str(self.tmp / "cert.pem")
        self.port = free_port()
        self._fake_port = free_port()  # reserved; the fake starts on first latency_url()
        config = CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "",
            workers=self.workers,
            tmp=self.tmp,
            max_streams=self.max_streams,
            fake_port=self._fake_port,
            port=self.port,
            token_body=TOKEN_BODY,
            send_body=SEND_BODY,
        )
        (self.tmp / "nginx.conf").write_text(config)
        self.process = subprocess.Popen(
            [
                nginx,
                "-c",
                str(self.tmp / "nginx.conf"),
                "-p",
                str(self.tmp),
                "-e",
                str(self.tmp / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    error = (self.tmp / "error.log").read_text() if (self.tmp / "error.log").exists() else ""
                    self.__exit__()
                    raise SystemExit(f"nginx did not start: {error[-1000:]}") from None
                time.sleep(0.05)
        self.url = f"https://127.0.0.1:{self.port}"
        return self

    def latency_url(self, ms: float) -> str:
        """A base URL whose sends (and token) are answered `ms` milliseconds late."""
        if not ms:
            return self.url
        if self._fake is None:
            self._fake = subprocess.Popen(
                [sys.executable, str(HERE / "fake_fcm.py"), "--port", str(self._fake_port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            self._fake.stdout.readline()  # its port: listening
        return f"{self.url}/latency/{ms:g}"

    def sends(self) -> int:
        """Sends answered so far (nginx flushes its access log buffer within a second)."""
        self.process.send_signal(1)  # SIGHUP reopens logs, flushing the buffer
        time.sleep(0.3)
        log = self.tmp / "sends.log"
        if not log.exists():
            return 0
        with open(log, "rb") as lines:
            return sum(1 for line in lines if b"/messages:send" in line)

    def __exit__(self, *exc):
        for process in (self.process, self._fake):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--max-streams", type=int, default=128)
    args = parser.parse_args()
    with NginxFcm(max_streams=args.max_streams) as fcm:
        print(f"{fcm.latency_url(args.latency_ms)}  (CA: {fcm.ca_file})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
