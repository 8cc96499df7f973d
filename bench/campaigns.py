#!/usr/bin/env python
"""Campaign benchmarks, part 1: what triggered campaigns cost /events, and how fast they fire.

    .venv/bin/python bench/campaigns.py                       # both parts
    .venv/bin/python bench/campaigns.py --parts events --rounds 3 --duration 10
    .venv/bin/python bench/campaigns.py --parts latency --latency-rate 5 --latency-duration 30

* ``events``: ``POST /events`` throughput under gunicorn on PostgreSQL (bench/api_load.py's
  server, clients and CPU accounting), with **no** campaign and with **20 active triggered
  campaigns** waiting for the very event the clients send (every event matches: the worst
  case for the request path), in the same run, alternating ``--rounds`` times; the figure is
  the ratio of the medians. The campaigns are paused between rounds (the web processes
  notice within their 2 s name cache). No task worker runs during this part: it measures
  the request path, which only queues a debounced match task (the matching itself is the
  workers' work, measured by the next part).
* ``latency``: a zero-delay triggered campaign, gunicorn, one ``db_worker``, ``herald_beat``
  and the FCM sandbox (``manage.py fcm_sandbox``, +20 ms per send); events for new users at
  a steady ``--rate``; for each, the time from the moment ``/events`` answered 200 to the
  moment the sandbox received the FCM request for that user's device. Prints p50/p99/max
  and how many never arrived within the wait.

Everything stays on 127.0.0.1. Seeded tenants are deleted afterwards unless ``--keep``.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import api_load  # noqa: E402

TRIGGERED_CAMPAIGNS = 20


def make_campaigns(tenant, *, event: str, count: int) -> list:
    from campaigns import services

    return [
        services.create_campaign(
            tenant=tenant,
            fields={
                "name": f"bench trigger {i}",
                "kind": "triggered",
                "trigger_event": event,
                "trigger_params": [{"param": "n", "op": ">=", "value": 0}],
                "delay_seconds": 600,
                "cooldown": "1d",
                "content": {"language": "en", "variants": [{"title": f"T{i}", "body": "b"}]},
            },
        )
        for i in range(count)
    ]


def set_live(campaigns, live: bool) -> None:
    from campaigns import services

    for campaign in campaigns:
        campaign.refresh_from_db()
        if live and campaign.status == "draft":
            services.activate(campaign)
        elif live and campaign.status == "paused":
            services.resume(campaign)
        elif not live and campaign.status == "active":
            services.pause(campaign)


def events_part(args) -> list[dict]:
    from tenants.models import Tenant

    run = f"camp-{os.getpid()}"
    tenant_id, api_key = api_load.seed(run, args.clients)
    tenant = Tenant.objects.get(tenant_id=tenant_id)
    campaigns = make_campaigns(tenant, event="screen_view", count=TRIGGERED_CAMPAIGNS)
    env = api_load.server_env(args)
    port = api_load.free_port()
    server = api_load.start_gunicorn(args, env, port)
    rows = []
    try:
        for r in range(args.rounds):
            for mode in ("none", "20 triggered"):
                set_live(campaigns, mode != "none")
                time.sleep(3)  # the web processes' cache of trigger names (2 s)
                print(f"round {r + 1}: /events with {mode} ...", flush=True)
                row = api_load.run_scenario("events", args, port, run, tenant_id, api_key, server)
                rows.append({**row, "mode": mode, "round": r + 1})
    finally:
        server.terminate()
        server.wait(timeout=30)
        set_live(campaigns, False)
    from django_tasks_db.models import DBTaskResult

    from campaigns.models import PendingTrigger

    queued = DBTaskResult.objects.filter(task_path="campaigns.tasks.match_events_task").count()
    print(f"match tasks queued by the 20-campaign rounds (no worker ran): {queued}")
    made = PendingTrigger.objects.filter(campaign__tenant=tenant).count()
    print(f"pending triggers made (none: no worker ran): {made}")
    DBTaskResult.objects.filter(task_path="campaigns.tasks.match_events_task").delete()
    if not args.keep:
        api_load.cleanup(run)
    return rows


def print_events(rows: list[dict]) -> None:
    print(
        f"\n{'round':<6} {'campaigns':<14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'CPU ms/req':>11}"
    )
    for row in rows:
        cpu = row["cpu_gunicorn_ms"] + row["cpu_postgres_ms"] + row["cpu_redis_ms"]
        print(
            f"{row['round']:<6} {row['mode']:<14} {row['rps']:>8.0f} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['errors']:>7} {cpu:>11.2f}"
        )
    none = statistics.median(r["rps"] for r in rows if r["mode"] == "none")
    some = statistics.median(r["rps"] for r in rows if r["mode"] != "none")
    print(
        f"median req/s: none {none:.0f}, 20 triggered {some:.0f}: {100 * some / none:.0f} % "
        "(goal: at least 80 %)"
    )


# --- Latency ---------------------------------------------------------------------------------


def manage(*command: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def latency_part(args) -> dict:
    from campaigns import services
    from fcm_sandbox.accounts import provision_tenant
    from fcm_sandbox.models import SandboxMessage
    from tenants.models import ApiKey, Tenant

    run = f"lat-{os.getpid()}"
    sandbox_port = api_load.free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    from django.conf import settings

    settings.FCM_ALLOWED_TOKEN_URIS.append(f"{sandbox_url}/token")
    tenant = Tenant.objects.create(name=f"Latency {run}", tenant_id=run)
    provision_tenant(tenant=tenant, sandbox_url=sandbox_url)
    _, key = ApiKey.generate(tenant=tenant, name="latency", kind=ApiKey.Kind.APP)
    campaign = services.create_campaign(
        tenant=tenant,
        fields={
            "name": "cart abandoned now",
            "kind": "triggered",
            "trigger_event": "cart_abandoned",
            "cooldown": "1d",
            "content": {"language": "en", "variants": [{"title": "Your cart", "body": "is waiting"}]},
        },
    )
    services.activate(campaign)
    env = {
        **api_load.server_env(args),
        "FCM_SANDBOX_ENABLED": "1",
        "FCM_API_URL": sandbox_url,
        "FCM_SANDBOX_URL": sandbox_url,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
    }
    port = api_load.free_port()
    processes = [manage("fcm_sandbox", "--port", str(sandbox_port), "--latency-ms", "20", "--quiet", env=env)]
    accepted: dict[str, float] = {}
    try:
        server = api_load.start_gunicorn(args, env, port)
        processes.append(server)
        for _ in range(args.latency_workers):
            processes.append(manage("db_worker", "--no-startup-delay", "--interval", "0.05", env=env))
        processes.append(manage("herald_beat", "--interval", "5", env=env))
        time.sleep(3)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        interval = 1 / args.latency_rate
        total = int(args.latency_rate * args.latency_duration)
        print(f"latency: {total} events at {args.latency_rate:g}/s ...", flush=True)
        start = time.perf_counter()
        for i in range(total):
            time.sleep(max(0.0, start + i * interval - time.perf_counter()))
            token = f"{run}-device-{i}"
            body = json.dumps(
                {
                    "tenant_id": run,
                    "api_key": key,
                    "app_user_id": f"{run}-user-{i}",
                    "event_name": "cart_abandoned",
                    "event_time": datetime.now(UTC).isoformat(),
                    "device_token": token,
                    "platform": "android",
                    "push_permission_granted": True,
                    "timezone": "Europe/Istanbul",
                    "language": "en",
                    "country": "TR",
                    "session_id": "s",
                    "params": {"items": 2},
                }
            )
            connection.request("POST", "/events", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                accepted[token] = time.time()
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            if SandboxMessage.objects.filter(target__startswith=f"{run}-device-").count() >= len(accepted):
                break
            time.sleep(0.5)
        received = {}
        for target, at in SandboxMessage.objects.filter(target__startswith=f"{run}-device-").values_list(
            "target", "received_at"
        ):
            received.setdefault(target, at.timestamp())
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    latencies = sorted(received[t] - accepted[t] for t in accepted if t in received)
    if not args.keep:
        tenant.delete()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "events": len(accepted),
        "arrived": len(latencies),
        "p50_s": pct(0.5),
        "p99_s": pct(0.99),
        "max_s": pct(1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--parts", default="events,latency")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of none / 20 campaigns")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per events run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--latency-rate", type=float, default=5.0, help="latency part: events per second")
    parser.add_argument("--latency-duration", type=float, default=30.0)
    parser.add_argument("--latency-workers", type=int, default=1, help="db_worker processes")
    parser.add_argument(
        "--wait", type=float, default=60.0, help="latency part: seconds to wait for stragglers"
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.scenarios = "events"
    args.rate = 0.0  # api_load's pacing: the events part sends as fast as answered
    api_load.forget_redis_if_silent(args)
    load_before = os.getloadavg()[0]
    api_load.ensure_database(args.database_url)
    os.environ["FCM_SANDBOX_ENABLED"] = "1"
    api_load.setup_django(api_load.server_env(args))
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    header = (
        f"Herald campaigns bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, PostgreSQL {pg_version}, "
        f"gunicorn gthread {args.workers}x{args.threads}, "
        f"load average before {load_before:.2f}"
    )
    parts = args.parts.split(",")
    if "events" in parts:
        rows = events_part(args)
        print("\n" + header)
        print(f"/events, {args.clients} clients, {args.duration:g} s per run, {args.rounds} rounds")
        print_events(rows)
    if "latency" in parts:
        result = latency_part(args)
        print("\n" + header)
        print(
            f"trigger latency (event accepted -> FCM request), zero delay, "
            f"{args.latency_rate:g} events/s for "
            f"{args.latency_duration:g} s, {args.latency_workers} db_worker, sandbox +20 ms: "
            f"p50 {result['p50_s']:.2f} s, p99 {result['p99_s']:.2f} s, max {result['max_s']:.2f} s, "
            f"{result['arrived']} of {result['events']} arrived"
        )
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
