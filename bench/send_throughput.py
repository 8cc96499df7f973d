#!/usr/bin/env python
"""How fast Herald's FCM client sends, next to firebase-admin's ``send_each``.

    .venv/bin/python bench/send_throughput.py [--messages 5000] [--latencies 0,50]
                                              [--concurrency 32,128] [--no-yardstick]

Both clients send the same data-only messages to a fast local fake FCM
(``bench/fake_fcm.py``: asyncio, in its own process, so its CPU is not counted and it
is never the bottleneck), with 0 ms and 50 ms of added latency per send. Printed per run:
messages/second (wall clock), CPU milliseconds per message (user + system time of the
sending process, every thread), and token fetches.

The yardstick, firebase-admin, lives only in its own virtualenv
(``bench/.venv-yardstick``, made on first run with pip): Herald itself never depends
on it. Both processes refuse to resolve any host but this one, so nothing reaches
Google (google-auth's background regional-access-boundary lookups included).

The script has two roles: the orchestrator (default) and ``--yardstick``
(firebase-admin, run by the yardstick venv's Python). Only the orchestrator imports
Herald, so the yardstick needs nothing but the standard library and firebase-admin.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fake_fcm import FakeFcm, fake_stats

ROOT = Path(__file__).resolve().parent.parent
YARDSTICK_VENV = ROOT / "bench" / ".venv-yardstick"
PROJECT = "bench-project"
BATCH = 500  # send_each's maximum
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def local_network_only() -> None:
    """Make any lookup of a host other than this machine fail at once."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, f"the benchmark stays local, not {name}")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def message_fields(i: int) -> dict:
    """What each benchmark push carries, the same for both clients."""
    return {
        "token": f"bench-device-token-{i:08d}-" + "x" * 120,  # real tokens are ~150 characters
        "title": "Your order has shipped",
        "body": f"Order #{100000 + i} is on its way and arrives tomorrow.",
        "data": {"order_id": str(100000 + i), "tracking_token": f"trk-{i:012d}"},
    }


# --- Herald ----------------------------------------------------------------------------------


def run_herald(*, fake: str, info: dict, messages: int, latency: int, concurrency: int) -> dict:
    from messaging.fcm import FcmClient, FcmTarget, build_message

    client = FcmClient(
        service_account_info=info, api_url=f"{fake}/latency/{latency}", pool_size=concurrency, timeout=30
    )

    def send(i: int) -> str:
        fields = message_fields(i)
        return client.send(
            build_message(
                target=FcmTarget(token=fields["token"]),
                title=fields["title"],
                body=fields["body"],
                data=fields["data"],
                priority=8,
                ttl_seconds=86400,
            )
        )

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, range(concurrency)))  # warm up: the token, the connections
        fake_stats(fake, reset=True)
        wall, cpu = time.perf_counter(), time.process_time()
        names = list(pool.map(send, range(messages)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    client.close()
    stats = fake_stats(fake)
    assert len(set(names)) == messages and stats["send"] == messages, stats
    return {
        "per_second": messages / wall,
        "cpu_ms": 1000 * cpu / messages,
        "tokens": stats["token"],
        "wall": wall,
    }


# --- firebase-admin (runs in the yardstick venv) ------------------------------------------------


def run_yardstick(*, fake: str, key_file: str, messages: int, latency: int) -> dict:
    import firebase_admin
    import requests
    from firebase_admin import _http_client, credentials, messaging

    app = firebase_admin.initialize_app(credentials.Certificate(key_file), name=f"bench-{latency}")
    service = messaging._get_messaging_service(app)
    # Point it at the fake, with the pool firebase-admin mounts for fcm.googleapis.com.
    service._fcm_url = f"{fake}/latency/{latency}/v1/projects/{PROJECT}/messages:send"
    service._client.session.mount(
        fake,
        requests.adapters.HTTPAdapter(
            pool_connections=100, pool_maxsize=100, max_retries=_http_client.DEFAULT_RETRY_CONFIG
        ),
    )

    def batch(start: int, stop: int) -> list:
        out = []
        for i in range(start, stop):
            fields = message_fields(i)
            out.append(
                messaging.Message(
                    token=fields["token"],
                    data={**fields["data"], "title": fields["title"], "body": fields["body"]},
                    android=messaging.AndroidConfig(priority="high", ttl=86400),
                    apns=messaging.APNSConfig(
                        headers={"apns-push-type": "background", "apns-priority": "5"},
                        payload=messaging.APNSPayload(aps=messaging.Aps(content_available=True)),
                    ),
                    webpush=messaging.WebpushConfig(headers={"Urgency": "high", "TTL": "86400"}),
                )
            )
        return out

    messaging.send_each(batch(0, 10), app=app)  # warm up: the token
    fake_stats(fake, reset=True)
    wall, cpu = time.perf_counter(), time.process_time()
    sent = 0
    for start in range(0, messages, BATCH):
        response = messaging.send_each(batch(start, min(start + BATCH, messages)), app=app)
        sent += response.success_count
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = fake_stats(fake)
    assert sent == messages == stats["send"], (sent, stats)
    return {
        "per_second": messages / wall,
        "cpu_ms": 1000 * cpu / messages,
        "tokens": stats["token"],
        "wall": wall,
        "version": firebase_admin.__version__,
    }


def yardstick_python() -> Path | None:
    """The yardstick venv's Python, made (with firebase-admin) if missing; None if impossible."""
    python = YARDSTICK_VENV / "bin" / "python"
    check = [str(python), "-c", "import firebase_admin"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"Making {YARDSTICK_VENV.relative_to(ROOT)} with firebase-admin (once)…", file=sys.stderr)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(YARDSTICK_VENV)], check=True, capture_output=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "firebase-admin"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(
            f"firebase-admin could not be installed, so there is no yardstick: {exc}\n"
            f"{detail.decode(errors='replace')[-800:]}",
            file=sys.stderr,
        )
        return None
    return python


# --- The orchestra ------------------------------------------------------------------------------


def make_service_account(token_uri: str) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "bench-key",
        "private_key": pem,
        "client_email": f"bench@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latencies", default="0,50", help="added ms per send, comma-separated")
    parser.add_argument("--concurrency", default="32,128", help="Herald's sending threads, comma-separated")
    parser.add_argument("--no-yardstick", action="store_true")
    parser.add_argument("--yardstick", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fake", help=argparse.SUPPRESS)
    parser.add_argument("--key-file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    local_network_only()
    latencies = [int(x) for x in args.latencies.split(",")]
    if args.yardstick:
        for latency in latencies:
            result = run_yardstick(
                fake=args.fake, key_file=args.key_file, messages=args.messages, latency=latency
            )
            print(json.dumps({"latency": latency, **result}), flush=True)
        return None

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)  # DEBUG is off, as in production
    import django

    django.setup()
    from django.conf import settings

    settings.FCM_TOKEN_URL = ""  # the key's own token_uri: the fake

    with FakeFcm() as fake_fcm:
        fake = fake_fcm.base
        info = make_service_account(f"{fake}/token")
        settings.FCM_ALLOWED_TOKEN_URIS = [f"{fake}/token"]
        rows = []
        for latency in latencies:
            for concurrency in (int(x) for x in args.concurrency.split(",")):
                result = run_herald(
                    fake=fake, info=info, messages=args.messages, latency=latency, concurrency=concurrency
                )
                rows.append((latency, f"Herald FcmClient, {concurrency} threads", result))
                print(
                    f"  {latency:>3} ms  Herald, {concurrency} threads: {result['per_second']:,.0f} msg/s",
                    file=sys.stderr,
                )
        yardstick = {}
        python = None if args.no_yardstick else yardstick_python()
        if python is not None:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as key_file:
                json.dump(info, key_file)
            try:
                output = subprocess.run(
                    [
                        str(python),
                        __file__,
                        "--yardstick",
                        "--fake",
                        fake,
                        "--key-file",
                        key_file.name,
                        "--messages",
                        str(args.messages),
                        "--latencies",
                        args.latencies,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            finally:
                os.unlink(key_file.name)
            for line in output.splitlines():
                result = json.loads(line)
                yardstick[result["latency"]] = result
                rows.append((result["latency"], f"firebase-admin {result['version']} send_each", result))

    print(
        f"\n{args.messages:,} data-only messages per run against a local fake FCM "
        f"({os.cpu_count()} CPUs; the fake runs in its own process).\n"
    )
    columns = ("latency", "client", "msgs/s", "CPU ms/msg", "token fetches", "vs firebase-admin")
    widths = (">7", "<38", ">8", ">11", ">14", ">18")
    header = " ".join(f"{name:{width}}" for name, width in zip(columns, widths, strict=True))
    print(header)
    print("-" * len(header))
    for latency, label, result in sorted(rows, key=lambda r: r[0]):
        base = yardstick.get(latency)
        ratio = f"{result['per_second'] / base['per_second']:.1f}x" if base else "n/a"
        print(
            f"{latency:>4} ms {label:<38} {result['per_second']:>8,.0f} {result['cpu_ms']:>11.2f} "
            f"{result['tokens']:>14} {ratio:>18}"
        )
    print("\n(token fetches: during the timed run; each client fetched one token while warming up.)")
    if args.no_yardstick:
        print("(no yardstick: --no-yardstick)")
    elif not yardstick:
        print("(no yardstick: firebase-admin could not be installed in bench/.venv-yardstick)")
    else:
        print("(firebase-admin's send_each sends each batch of 500 from 500 new threads, pool of 100.)")


if __name__ == "__main__":
    main()
