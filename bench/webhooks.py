#!/usr/bin/env python
"""Delivery throughput with webhooks on for every delivery event, against off, in one run.

    .venv/bin/python bench/webhooks.py                     # 10,000 devices, 3 rounds
    .venv/bin/python bench/webhooks.py --devices 20000 --rounds 5
    .venv/bin/python bench/webhooks.py --database-url postgres://postgres@127.0.0.1:5432/bench

Each round sends one message to N fresh devices twice, once per mode, in alternating
order (off/on, then on/off, ...), each delivered by one real `db_worker` on the default
queue, beside a `db_worker` on the webhooks queue and `herald_beat`, as in a deployment:

* off: the tenant has no webhook endpoint;
* on: an endpoint subscribed to every event type, a receiver on 127.0.0.1 answering 200.

Throughput is N / the time from starting the workers to the sending worker finishing
the queue; since other load on a shared machine moves wall time a lot, the sending
worker's CPU time (user + system) is measured too, and the CPU of every worker.
Prints the median of each mode, their ratios (the goal: on >= 90 % of off),
and for "on" how long until the receiver had every event, and how many POSTs carried
them. Loopback only; the fake FCM is bench/fake_fcm.py.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _without_bench_dir() -> None:
    # This file is named like the webhooks app: with bench/ on sys.path, `import webhooks`
    # would find it instead of the app.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    sys.path.insert(0, str(ROOT))


sys.path.insert(0, str(BENCH))
from fake_fcm import FakeFcm  # noqa: E402
from fanout import make_devices, make_tenant, setup_django  # noqa: E402

_without_bench_dir()


class Receiver:
    """A tenant's back end: answers 200 and counts events by type."""

    def __init__(self):
        self.posts = 0
        self.events: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.posts += 1
                    for event in body["data"]:
                        receiver.events[event["type"]] = receiver.events.get(event["type"], 0) + 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/herald"

    def reset(self):
        with self.lock:
            self.posts, self.events = 0, {}


def cpu_seconds(process: subprocess.Popen) -> float:
    """Wait for a child and return the CPU time it used (user + system): unlike wall time,
    other load on the machine barely moves it."""
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return usage.ru_utime + usage.ru_stime


def run_once(
    tenant, count: int, *, mode: str, round_no: int, receiver: Receiver, env: dict, post: bool = True
) -> dict:
    from devices.models import Device
    from messaging.services import MessageInput, create_message
    from webhooks.models import Endpoint, EventType
    from webhooks.services import create_endpoint

    Endpoint.objects.filter(tenant=tenant).delete()
    if mode == "on":
        create_endpoint(tenant=tenant, url=receiver.url, event_types=list(EventType.values))
    receiver.reset()
    Device.objects.filter(tenant=tenant).update(push_permission=False)
    make_devices(tenant, count, prefix=f"r{round_no}{mode}")
    message, _ = create_message(
        tenant=tenant,
        spec=MessageInput(
            title="Bench", body="Hello", audience="filter", audience_params={"platforms": ["android"]}
        ),
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    started = time.perf_counter()
    sender = subprocess.Popen(
        [*manage, "db_worker", "--batch", "--no-startup-delay", "--interval", "0.05"], env=env, cwd=ROOT
    )
    helpers = [subprocess.Popen([*manage, "herald_beat", "--interval", "1"], env=env, cwd=ROOT)]
    if post:
        # At db_worker's default interval: an idle worker polling every 50 ms slowed the sender
        # visibly on two cores, with webhooks off as much as on.
        helpers.append(
            subprocess.Popen(
                [*manage, "db_worker", "--queue-name", "webhooks", "--no-startup-delay", "--interval", "1"],
                env=env,
                cwd=ROOT,
            )
        )
    sender_cpu = cpu_seconds(sender)
    wall = time.perf_counter() - started
    message.refresh_from_db()
    drained = None
    if mode == "on" and post:
        expected = count + 1  # a delivery.sent per device, and message.completed
        while time.perf_counter() - started < wall + 120:
            if sum(receiver.events.values()) >= expected:
                drained = time.perf_counter() - started
                break
            time.sleep(0.1)
    helper_cpu = 0.0
    for helper in helpers:
        helper.terminate()
        helper_cpu += cpu_seconds(helper)
    if message.status != "completed" or message.sent_count != count:
        raise SystemExit(f"message {message.status}, {message.sent_count}/{count} sent")
    return {
        "mode": mode,
        "seconds": wall,
        "msgs_per_s": count / wall,
        "drained": drained,
        "cpu_per_s": count / sender_cpu,
        "total_cpu_ms": 1000 * (sender_cpu + helper_cpu) / count,
        "posts": receiver.posts,
        "events": dict(receiver.events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added by the fake FCM")
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="run no webhooks worker: measure recording events alone, not posting them",
    )
    args = parser.parse_args()

    os.environ["WEBHOOKS_ALLOW_PRIVATE_ADDRESSES"] = os.environ["WEBHOOKS_ALLOW_HTTP"] = "true"
    tmp = tempfile.mkdtemp(prefix="herald-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    receiver = Receiver()
    rows = []
    with FakeFcm(latency_ms=args.latency_ms) as fake:
        setup_django(database_url, fake.url)
        from django.db import connection

        tenant, _ = make_tenant(fake.url)
        env = {**os.environ, "DATABASE_URL": database_url, "FCM_API_URL": fake.url, "LOG_LEVEL": "WARNING"}
        for round_no in range(args.rounds):
            order = ("off", "on") if round_no % 2 == 0 else ("on", "off")
            for mode in order:
                row = run_once(
                    tenant,
                    args.devices,
                    mode=mode,
                    round_no=round_no,
                    receiver=receiver,
                    env=env,
                    post=not args.record_only,
                )
                rows.append(row)
                drained = (
                    f", every event received after {row['drained']:.1f} s in {row['posts']} POSTs"
                    if row["drained"]
                    else ""
                )
                print(
                    f"round {round_no + 1} {mode:>3}: {row['seconds']:.1f} s, "
                    f"{row['msgs_per_s']:,.0f} msgs/s, {row['cpu_per_s']:,.0f} per sender CPU second, "
                    f"{row['total_cpu_ms']:.2f} CPU ms per delivery in all workers{drained}",
                    flush=True,
                )

    def median_of(key):
        return {m: statistics.median(r[key] for r in rows if r["mode"] == m) for m in ("off", "on")}

    median, per_cpu, total = median_of("msgs_per_s"), median_of("cpu_per_s"), median_of("total_cpu_ms")
    print(
        f"\nHerald delivery with and without webhooks, {args.devices:,} devices, {connection.vendor}, "
        f"fake FCM +{args.latency_ms:g} ms, {os.cpu_count()} cores, medians of {args.rounds}"
    )
    print(f"{'webhooks':>9} {'msgs/s':>9} {'per sender CPU s':>17} {'CPU ms/delivery, all workers':>29}")
    for mode in ("off", "on"):
        print(f"{mode:>9} {median[mode]:>9,.0f} {per_cpu[mode]:>17,.0f} {total[mode]:>29.2f}")
    print(
        f"on / off: {median['on'] / median['off']:.1%} of the throughput, "
        f"{per_cpu['on'] / per_cpu['off']:.1%} per sender CPU second (goal: at least 90 %)"
    )
    on = [r for r in rows if r["mode"] == "on"]
    if args.record_only:
        print("(record only: no webhooks worker ran)")
    elif all(r["drained"] for r in on):
        print(
            f"every webhook event received within {statistics.median(r['drained'] for r in on):.1f} s "
            f"of the start (median), in {statistics.median(r['posts'] for r in on):.0f} POSTs "
            f"for {args.devices + 1:,} events"
        )
    else:
        print("some webhook events had not arrived two minutes after sending finished")


if __name__ == "__main__":
    main()
