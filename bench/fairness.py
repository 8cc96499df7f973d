#!/usr/bin/env python
"""Per-tenant fairness: one tenant's 1-device push while another tenant's big message sends.

    .venv/bin/python bench/fairness.py                         # 200,000 devices, PostgreSQL
    .venv/bin/python bench/fairness.py --devices 1000000 --database-url postgres://…/fairness

Tenant "big" has N Android devices and sends one message to all of them; tenant "small"
has one device, and its back end calls ``POST /developer/push`` for it once a second
(``--interval``) from the moment the big message is created until it has completed. One
``db_worker`` process (the product's command and defaults, PostgreSQL) does all the work.
For each small push the fake FCM (``fake_fcm.py``, recording the sends to the small
tenant's project with their arrival time) tells when it arrived; printed: p50, p99 and
max of request → arrival, overall and split by what the big message was doing when the
push was made (fanning out, i.e. creating its delivery rows, or sending), plus the big
message's own wall time.

The developer pushes go through Django's whole stack in this process (``django.test.Client``:
middleware, server-key authentication, the view, ``send_developer_push``), not over a
socket: the time measured is the queue's and the worker's, which a network hop would not
change. Tables are ANALYZEd after the devices are made (``--no-analyze`` to skip), as
autovacuum would on a live database. The database is dropped and made again at the start
of every run. Loopback only; nothing reaches Google.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fake_fcm import FakeFcm  # noqa: E402
from fanout import make_devices, peak_rss_mb, setup_django  # noqa: E402
from send_throughput import make_service_account  # noqa: E402

# bench/ last: its webhooks.py must not hide the webhooks app from Django.
sys.path[:] = [path for path in sys.path if path != str(ROOT / "bench")] + [str(ROOT / "bench")]

SMALL_PROJECT = "fairness-small"


def fresh_database(url: str) -> None:
    """Drop and create the benchmark's PostgreSQL database: every run starts empty."""
    from urllib.parse import urlsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = sql.Identifier(parts.path.lstrip("/"))
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def make_tenant(tenant_id: str, project: str, fcm_url: str):
    from tenants.credentials import set_credentials
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name=tenant_id.title(), tenant_id=tenant_id)
    info = make_service_account(f"{fcm_url}/token") | {"project_id": project}
    set_credentials(tenant=tenant, raw=json.dumps(info))
    return tenant


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    if not values:
        return "      –        –        –     0"
    return (
        f"{statistics.median(values):>7.2f}  {percentile(values, 0.99):>7.2f}  "
        f"{max(values):>7.2f}  {len(values):>4}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/herald_fairness", help="PostgreSQL"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between small pushes")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added by the fake FCM")
    parser.add_argument("--no-analyze", action="store_true")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0,
        help="stop pushing after this long even if the big message is still sending (0: never)",
    )
    args = parser.parse_args()

    fresh_database(args.database_url)
    with FakeFcm(latency_ms=args.latency_ms, record_project=SMALL_PROJECT) as fake:
        setup_django(args.database_url, fake.url)
        from django.db import connection
        from django.test import Client

        from devices.models import AppUser, Device, hash_token
        from messaging.models import Message
        from messaging.services import MessageInput, create_message
        from tenants.models import ApiKey

        big = make_tenant("fair-big", "fairness-big", fake.url)
        small = make_tenant("fair-small", SMALL_PROJECT, fake.url)
        _, server_key = ApiKey.generate(tenant=small, name="fairness", kind=ApiKey.Kind.SERVER)
        user = AppUser.objects.create(tenant=small, app_user_id="small-user")
        Device.objects.create(
            tenant=small,
            user=user,
            token="small-token",
            token_hash=hash_token("small-token"),
            platform="android",
            push_permission=True,
        )
        made = time.perf_counter()
        make_devices(big, args.devices, prefix="fair")
        made = time.perf_counter() - made
        print(f"{args.devices:,} devices made in {made:.0f} s", file=sys.stderr)
        if not args.no_analyze:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

        env = {
            **os.environ,
            "DATABASE_URL": args.database_url,
            "FCM_API_URL": fake.url,
            "LOG_LEVEL": "WARNING",
        }
        worker_log = open(Path(tempfile.mkdtemp(prefix="herald-fairness-")) / "worker.log", "w")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-startup-delay"],
            env=env,
            cwd=ROOT,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        peak = [0.0]
        stop = threading.Event()

        def watch_memory():
            while not stop.is_set():
                peak[0] = max(peak[0], peak_rss_mb(worker.pid))
                time.sleep(0.5)

        threading.Thread(target=watch_memory, daemon=True).start()
        time.sleep(2)  # the worker is up and idle: the first small push measures the queue, not startup

        message, _ = create_message(
            tenant=big,
            spec=MessageInput(
                title="Big",
                body="Hello everyone",
                audience="filter",
                audience_params={"platforms": ["android"]},
            ),
        )
        started = time.perf_counter()
        client = Client(HTTP_X_SERVER_KEY=server_key)
        sent: dict[str, tuple[float, str]] = {}  # seq -> (time requested, phase)
        fanned_out_after = completed_after = None
        seq = 0
        try:
            while True:
                message.refresh_from_db(fields=["status", "fanned_out_at", "sent_count"])
                now = time.perf_counter() - started
                if fanned_out_after is None and message.fanned_out_at:
                    fanned_out_after = now
                if message.status == Message.Status.COMPLETED:
                    completed_after = now
                    break
                if args.max_seconds and now > args.max_seconds:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited with {worker.returncode}; see {worker_log.name}")
                phase = "fan-out" if message.fanned_out_at is None else "sending"
                seq += 1
                at = time.time()
                response = client.post(
                    "/developer/push",
                    {
                        "app_user_id": "small-user",
                        "title": "Your code",
                        "body": "123456",
                        "priority": 10,
                        "extra_data": {"fairness_seq": str(seq), "fairness_at": repr(at)},
                    },
                    content_type="application/json",
                )
                assert response.status_code == 201, response.content
                sent[str(seq)] = (at, phase)
                time.sleep(max(0.0, args.interval - (time.time() - at)))
            # The last small pushes may still arrive: wait while they do (until none has for 20 s).
            arrivals, quiet_since = len(fake.recorded()), time.time()
            while arrivals < len(sent) and time.time() - quiet_since < 20:
                time.sleep(1)
                if (now_arrived := len(fake.recorded())) > arrivals:
                    arrivals, quiet_since = now_arrived, time.time()
            recorded = fake.recorded()
        finally:
            stop.set()
            worker.terminate()
            worker.wait()

    arrived: dict[str, float] = {}
    for at, body in recorded:
        data = json.loads(body)["message"].get("data", {})
        arrived.setdefault(data.get("fairness_seq"), at)
    waits = {"fan-out": [], "sending": []}
    for key, (at, phase) in sent.items():
        if key in arrived:
            waits[phase].append(arrived[key] - at)
    missing = len(sent) - sum(len(v) for v in waits.values())

    print(
        f"\nFairness: tenant 'big' sends one message to {args.devices:,} devices (PostgreSQL "
        f"{connection.pg_version // 10000 if connection.vendor == 'postgresql' else ''}, one db_worker, "
        f"fake FCM +{args.latency_ms:g} ms, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}); tenant 'small' POSTs /developer/push for 1 device every "
        f"{args.interval:g} s."
    )
    fanned = f"{fanned_out_after:.1f} s" if fanned_out_after else "(not yet)"
    done = (
        f"completed after {completed_after:.1f} s ({args.devices / completed_after:,.0f} msgs/s)"
        if completed_after
        else f"still sending when measuring stopped at {args.max_seconds:g} s ({message.sent_count:,} sent)"
    )
    print(f"big message: fanned out after {fanned}, {done}, worker peak {peak[0]:.0f} MB")
    print(f"\n{'small push: request -> FCM, s':<34} {'p50':>7}  {'p99':>7}  {'max':>7}  {'n':>4}")
    print(f"{'while the big one fans out':<34} {summary(waits['fan-out'])}")
    print(f"{'while the big one sends':<34} {summary(waits['sending'])}")
    print(f"{'all':<34} {summary(waits['fan-out'] + waits['sending'])}")
    if missing:
        waited = [time.time() - at for key, (at, _) in sent.items() if key not in arrived]
        print(
            f"{missing} small pushes had not reached the fake FCM when measuring ended "
            f"(waiting {min(waited):.0f}–{max(waited):.0f} s so far)"
        )


if __name__ == "__main__":
    main()
