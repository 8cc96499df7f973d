#!/usr/bin/env python
"""Which HTTP client sends FCM v1 requests for the least CPU: urllib3, httpx (HTTP/2),
aiohttp, pycurl (HTTP/2) and Herald's own FcmClient, beside firebase-admin's send_each.

    .venv/bin/python bench/http_clients.py [--messages 6000] [--latencies 0,50] [--rounds 3]
                                           [--inflight 1000] [--clients urllib3-128,httpx-h2,…]

Every client sends the same data-only FCM v1 messages (a JSON body built and encoded per
message, a bearer token, the answer's JSON parsed for its name) to ``nginx_fcm.py``: nginx
over TLS with HTTP/1.1 and HTTP/2, answering at once (0 ms) or 50 ms later (through the
fake_fcm.py behind it). Each run is its own process, so that one client's threads,
connections and garbage do not tax the next; it warms up (connections, TLS, the token)
with as many messages as it keeps in flight, then times ``--messages`` sends. CPU is the
process's user + system time over the timed part, every thread included. Rounds are
interleaved (each round runs every client at every latency, in a rotated order) and the
table shows medians, with ratios to firebase-admin measured in the same pass.

The clients (``--inflight`` messages in flight, 1,000 by default):

* ``urllib3-128``: a urllib3 pool driven by 128 threads, as messaging/fcm.py is today
  (``SEND_CONCURRENCY=128``); ``urllib3-1000`` the same with one thread per message in flight;
* ``httpx-h2``: httpx.AsyncClient with ``http2=True``, one event loop, in-flight coroutines
  multiplexed as streams (nginx allows 128 per connection; httpx opens more connections);
* ``aiohttp``: aiohttp.ClientSession over HTTP/1.1, a pool of one connection per message in flight;
* ``pycurl-h2``: libcurl's multi interface with HTTP/2 multiplexing (``PIPEWAIT``), one
  easy handle per message in flight, reused;
* ``herald-urllib3``, ``herald-curl``: Herald's ``FcmClient`` itself (``build_message``,
  the token cache, error mapping), the first from 128 threads as the worker does today, the
  second through ``send_many`` on the curl transport (``HERALD_FCM_TRANSPORT=curl``);
* ``firebase-admin``: ``messaging.send_each`` in batches of 500, the yardstick.

The third-party clients and firebase-admin live only in ``bench/.venv-clients`` (made on
first use with pip): Herald does not depend on them. ``herald-*`` run in Herald's venv.
Everything stays on 127.0.0.1.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv-clients"
PACKAGES = ["urllib3", "httpx[http2]", "aiohttp", "pycurl", "firebase-admin"]
PROJECT = "bench-project"
TOKEN = "ya29.nginx-fake-token"
CLIENTS = [
    "urllib3-128",
    "urllib3-1000",
    "httpx-h2",
    "aiohttp",
    "pycurl-h2",
    "herald-urllib3",
    "herald-curl",
    "firebase-admin",
]
HERALD_CLIENTS = {"herald-urllib3", "herald-curl"}


def body(i: int) -> bytes:
    """One data-only FCM v1 request body, built and encoded per message as a sender would."""
    message = {
        "message": {
            "token": f"bench-device-token-{i:08d}-" + "x" * 120,  # real tokens are ~150 characters
            "data": {
                "order_id": str(100000 + i),
                "tracking_token": f"trk-{i:012d}",
                "title": "Your order has shipped",
                "body": f"Order #{100000 + i} is on its way and arrives tomorrow.",
            },
            "android": {"priority": "HIGH", "ttl": "86400s"},
            "apns": {
                "headers": {"apns-push-type": "background", "apns-priority": "5"},
                "payload": {"aps": {"content-available": 1}},
            },
            "webpush": {"headers": {"Urgency": "high", "TTL": "86400"}},
        }
    }
    return json.dumps(message, separators=(",", ":")).encode()


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json; charset=UTF-8"}


def name_of(data: bytes) -> str:
    name = json.loads(data)["name"]
    assert name.startswith("projects/")
    return name


# --- The clients (each runs in its own process) ------------------------------------------------


def run_urllib3(url: str, ca: str, messages: int, inflight: int) -> tuple[float, float, int]:
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    pool = urllib3.connection_from_url(
        url, maxsize=inflight, block=False, retries=False, ca_certs=ca, timeout=urllib3.Timeout(30, 30)
    )
    path = urllib3.util.parse_url(url).request_uri

    def send(i: int) -> str:
        response = pool.urlopen("POST", path, body=body(i), headers=HEADERS, assert_same_host=False)
        assert response.status == 200, response.status
        return name_of(response.data)

    with ThreadPoolExecutor(max_workers=inflight) as executor:
        list(executor.map(send, range(inflight)))
        return timed(lambda: list(executor.map(send, range(messages))))


def run_httpx(url: str, ca: str, messages: int, inflight: int) -> tuple[float, float, int]:
    import asyncio
    import ssl

    import httpx

    async def main():
        limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
        async with httpx.AsyncClient(
            http2=True, verify=ssl.create_default_context(cafile=ca), limits=limits, timeout=30
        ) as client:

            async def send(i: int) -> str:
                response = await client.post(url, content=body(i), headers=HEADERS)
                assert response.status_code == 200 and response.http_version == "HTTP/2", response
                return name_of(response.content)

            await run_coroutines(send, inflight, inflight)
            return await timed_async(lambda: run_coroutines(send, messages, inflight))

    return asyncio.run(main())


def run_aiohttp(url: str, ca: str, messages: int, inflight: int) -> tuple[float, float, int]:
    import asyncio
    import ssl

    import aiohttp

    async def main():
        connector = aiohttp.TCPConnector(limit=inflight, ssl=ssl.create_default_context(cafile=ca))
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as session:

            async def send(i: int) -> str:
                async with session.post(url, data=body(i), headers=HEADERS) as response:
                    assert response.status == 200, response.status
                    return name_of(await response.read())

            await run_coroutines(send, inflight, inflight)
            return await timed_async(lambda: run_coroutines(send, messages, inflight))

    return asyncio.run(main())


async def run_coroutines(send, count: int, inflight: int) -> list:
    """`count` sends, `inflight` at a time: that many coroutines each taking the next index."""
    import asyncio

    names: list = []
    indexes = iter(range(count))

    async def worker():
        for i in indexes:
            names.append(await send(i))

    await asyncio.gather(*(worker() for _ in range(inflight)))
    return names


def run_pycurl(url: str, ca: str, messages: int, inflight: int) -> tuple[float, float, int]:
    import pycurl

    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    headers = [f"{key}: {value}" for key, value in HEADERS.items()]
    handles = []
    for _ in range(inflight):
        handle = pycurl.Curl()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
        handle.setopt(pycurl.PIPEWAIT, 1)
        handle.setopt(pycurl.CAINFO, ca)
        handle.setopt(pycurl.HTTPHEADER, headers)
        handle.setopt(pycurl.POST, 1)
        handle.setopt(pycurl.TIMEOUT, 30)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handles.append(handle)

    def send_all(count: int) -> list:
        names: list = []
        indexes = iter(range(count))

        def start(handle) -> bool:
            i = next(indexes, None)
            if i is None:
                return False
            chunks: list[bytes] = []
            handle.chunks = chunks
            handle.setopt(pycurl.WRITEFUNCTION, chunks.append)
            handle.setopt(pycurl.POSTFIELDS, body(i))
            multi.add_handle(handle)
            return True

        running = sum(start(handle) for handle in handles)
        while running:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, done, failed = multi.info_read()
                for handle in done:
                    assert handle.getinfo(pycurl.RESPONSE_CODE) == 200
                    names.append(name_of(b"".join(handle.chunks)))
                    multi.remove_handle(handle)
                    running -= 1
                    running += start(handle)
                if failed:
                    raise RuntimeError(failed)
                if not queued:
                    break
            if running:
                wait = multi.timeout()  # ms until curl's next timer, -1: none
                multi.select(1.0 if wait < 0 else min(1.0, wait / 1000))
        return names

    send_all(inflight)
    assert handles[0].getinfo(pycurl.INFO_HTTP_VERSION) == pycurl.CURL_HTTP_VERSION_2_0
    return timed(lambda: send_all(messages))


def run_firebase_admin(url: str, ca: str, messages: int, inflight: int) -> tuple[float, float, int]:
    os.environ["REQUESTS_CA_BUNDLE"] = ca  # google-auth's and firebase-admin's requests
    import firebase_admin
    import requests
    from firebase_admin import _http_client, credentials, messaging

    info = json.loads(os.environ["BENCH_SERVICE_ACCOUNT"])
    app = firebase_admin.initialize_app(credentials.Certificate(info), name="bench")
    service = messaging._get_messaging_service(app)
    service._fcm_url = url  # the fake, with the pool firebase-admin mounts for Google's host
    base = url.split("/v1/", 1)[0]
    service._client.session.mount(
        base,
        requests.adapters.HTTPAdapter(
            pool_connections=100, pool_maxsize=100, max_retries=_http_client.DEFAULT_RETRY_CONFIG
        ),
    )

    def batch(start: int, stop: int) -> list:
        out = []
        for i in range(start, stop):
            out.append(
                messaging.Message(
                    token=f"bench-device-token-{i:08d}-" + "x" * 120,
                    data={
                        "order_id": str(100000 + i),
                        "tracking_token": f"trk-{i:012d}",
                        "title": "Your order has shipped",
                        "body": f"Order #{100000 + i} is on its way and arrives tomorrow.",
                    },
                    android=messaging.AndroidConfig(priority="high", ttl=86400),
                    apns=messaging.APNSConfig(
                        headers={"apns-push-type": "background", "apns-priority": "5"},
                        payload=messaging.APNSPayload(aps=messaging.Aps(content_available=True)),
                    ),
                    webpush=messaging.WebpushConfig(headers={"Urgency": "high", "TTL": "86400"}),
                )
            )
        return out

    def send_all(count: int) -> list:
        sent = []
        for start in range(0, count, 500):
            response = messaging.send_each(batch(start, min(start + 500, count)), app=app)
            assert response.failure_count == 0, response.responses[0].exception
            sent += [r.message_id for r in response.responses]
        return sent

    send_all(min(inflight, 500))
    return timed(lambda: send_all(messages))


def run_herald(
    url: str, ca: str, messages: int, inflight: int, *, transport: str
) -> tuple[float, float, int]:
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    os.environ["HERALD_FCM_TRANSPORT"] = transport
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)  # DEBUG off, as in production
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    from messaging.fcm import FcmTarget, build_message, make_client

    info = json.loads(os.environ["BENCH_SERVICE_ACCOUNT"])
    settings.FCM_TOKEN_URL = ""
    settings.FCM_ALLOWED_TOKEN_URIS = [info["token_uri"]]
    api_url = url.split("/v1/", 1)[0]
    client = make_client(service_account_info=info, api_url=api_url, pool_size=inflight, timeout=30)

    def message(i: int) -> dict:
        return build_message(
            target=FcmTarget(token=f"bench-device-token-{i:08d}-" + "x" * 120),
            title="Your order has shipped",
            body=f"Order #{100000 + i} is on its way and arrives tomorrow.",
            data={"order_id": str(100000 + i), "tracking_token": f"trk-{i:012d}"},
            priority=8,
            ttl_seconds=86400,
        )

    if transport == "urllib3":
        from concurrent.futures import ThreadPoolExecutor

        threads = 128  # SEND_CONCURRENCY, as the worker sends today

        with ThreadPoolExecutor(max_workers=threads) as executor:
            list(executor.map(lambda i: client.send(message(i)), range(threads)))
            return timed(lambda: list(executor.map(lambda i: client.send(message(i)), range(messages))))

    def send_all(count: int) -> list:
        results = client.send_many([message(i) for i in range(count)])
        assert all(isinstance(name, str) for name in results), next(
            r for r in results if not isinstance(r, str)
        )
        return results

    send_all(inflight)
    return timed(lambda: send_all(messages))


def timed(work) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    names = work()
    return time.perf_counter() - wall, time.process_time() - cpu, len(set(names))


async def timed_async(work) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    names = await work()
    return time.perf_counter() - wall, time.process_time() - cpu, len(set(names))


RUNNERS = {
    "urllib3-128": lambda url, ca, n, inflight: run_urllib3(url, ca, n, 128),
    "urllib3-1000": lambda url, ca, n, inflight: run_urllib3(url, ca, n, inflight),
    "httpx-h2": run_httpx,
    "aiohttp": run_aiohttp,
    "pycurl-h2": run_pycurl,
    "herald-urllib3": lambda url, ca, n, inflight: run_herald(url, ca, n, inflight, transport="urllib3"),
    "herald-curl": lambda url, ca, n, inflight: run_herald(url, ca, n, inflight, transport="curl"),
    "firebase-admin": run_firebase_admin,
}


# --- The orchestra -----------------------------------------------------------------------------


def clients_python() -> Path:
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import urllib3, httpx, h2, aiohttp, pycurl, firebase_admin"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"Making {VENV.relative_to(ROOT)} with {', '.join(PACKAGES)} (once)…", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


def versions(python: Path) -> str:
    code = (
        "import urllib3, httpx, h2, aiohttp, pycurl, firebase_admin; "
        "print(f'urllib3 {urllib3.__version__}, httpx {httpx.__version__} (h2 {h2.__version__}), "
        "aiohttp {aiohttp.__version__}, {pycurl.version.split()[0]} ({pycurl.version.split()[1]}), "
        "firebase-admin {firebase_admin.__version__}')"
    )
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


def service_account(token_uri: str) -> dict:
    sys.path.insert(0, str(HERE))
    from send_throughput import make_service_account

    return make_service_account(token_uri)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--latencies", default="0,50", help="added ms per send, comma-separated")
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one client, in a child process
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        wall, cpu, unique = RUNNERS[args.run](args.url, args.ca, args.messages, args.inflight)
        assert unique == args.messages, (unique, args.messages)
        print(json.dumps({"wall": wall, "cpu": cpu}))
        return

    from nginx_fcm import NginxFcm

    clients = args.clients.split(",")
    latencies = [int(x) for x in args.latencies.split(",")]
    python = clients_python()
    herald_python = ROOT / ".venv" / "bin" / "python"
    results: dict[tuple[str, int], list[dict]] = {}
    load = []
    with NginxFcm() as fcm:
        info = service_account(f"{fcm.url}/token")
        env = {**os.environ, "BENCH_SERVICE_ACCOUNT": json.dumps(info)}
        for round_ in range(args.rounds):
            order = clients[round_ % len(clients) :] + clients[: round_ % len(clients)]
            for latency in latencies:
                base = fcm.latency_url(latency)
                url = f"{base}/v1/projects/{PROJECT}/messages:send"
                for client in order:
                    load.append(os.getloadavg()[0])
                    command = [
                        str(herald_python if client in HERALD_CLIENTS else python),
                        __file__,
                        "--run", client, "--url", url, "--ca", fcm.ca_file,
                        "--messages", str(args.messages), "--inflight", str(args.inflight),
                    ]  # fmt: skip
                    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
                    if done.returncode != 0:
                        print(f"{client} at {latency} ms failed:\n{done.stderr[-1500:]}", file=sys.stderr)
                        continue
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    results.setdefault((client, latency), []).append(result)
                    print(
                        f"round {round_ + 1} {latency:>3} ms {client:<15} "
                        f"{args.messages / result['wall']:>7,.0f} msg/s "
                        f"{1000 * result['cpu'] / args.messages:>6.3f} CPU ms/msg",
                        file=sys.stderr,
                        flush=True,
                    )

    print(
        f"\n{args.messages:,} messages per run, {args.inflight:,} in flight, medians of {args.rounds} "
        f"interleaved rounds; nginx fake FCM over TLS; {os.cpu_count()} CPUs shared (load average "
        f"{min(load):.1f}–{max(load):.1f} during the runs)"
    )
    print(versions(python))
    print("\n| FCM latency | client | msgs/s | CPU ms/msg | msgs/s vs send_each | CPU/msg vs send_each |")
    print("|---|---|---:|---:|---:|---:|")
    for latency in latencies:
        medians = {}
        for client in clients:
            runs = results.get((client, latency))
            if runs:
                medians[client] = (
                    statistics.median(args.messages / r["wall"] for r in runs),
                    statistics.median(1000 * r["cpu"] / args.messages for r in runs),
                )
        base = medians.get("firebase-admin")
        for client, (rate, cpu) in medians.items():
            ratio = f"{rate / base[0]:.2f}x" if base else "n/a"
            cpu_ratio = f"{cpu / base[1]:.2f}x" if base else "n/a"
            print(f"| {latency} ms | {client} | {rate:,.0f} | {cpu:.3f} | {ratio} | {cpu_ratio} |")


if __name__ == "__main__":
    main()
