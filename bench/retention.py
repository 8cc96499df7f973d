#!/usr/bin/env python
"""Retention under load: deleting millions of old events in batches while /events is busy.

    .venv/bin/python bench/retention.py                          # 10,000,000 old events
    .venv/bin/python bench/retention.py --events 2000000 --batch-size 5000 --clients 16

Uses bench/api_load.py's machinery: gunicorn (config.wsgi) on a free port of 127.0.0.1, a
seeded tenant with an app key, and asyncio clients posting ``POST /events`` on keep-alive
connections. Before the load starts, the tenant is given ``--events`` events received 200
days ago (one INSERT … SELECT generate_series per million, then VACUUM ANALYZE), past the
180-day retention. Then:

1. ``before``: /events alone for ``--duration`` seconds: throughput, p50/p99/max;
2. ``during``: retention (``messaging.retention.apply_retention``, in its own process, as the
   daily task runs it) deletes the old events ``--batch-size`` ids per DELETE while /events
   runs again for ``--duration`` seconds, started with it;
3. how long retention took in all, rows per second, and that exactly the old events went
   (every event /events stored is still there).

PostgreSQL only (the production database). The benchmark's database is dropped at the end
unless ``--keep``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api_load  # noqa: E402  (bench/ is not a package)

ROOT = api_load.ROOT
AGE_DAYS = 200
PER_INSERT = 1_000_000


def add_old_events(tenant_id: str, count: int) -> None:
    """`count` events of one historic user, received AGE_DAYS ago, straight in SQL."""
    from django.db import connection

    from devices.models import AppUser
    from tenants.models import Tenant

    tenant = Tenant.objects.get(tenant_id=tenant_id)
    user = AppUser.objects.create(tenant=tenant, app_user_id=f"{tenant_id}-historic")
    started = time.monotonic()
    with connection.cursor() as cursor:
        for first in range(0, count, PER_INSERT):
            last = min(count, first + PER_INSERT)
            cursor.execute(
                "INSERT INTO devices_event (tenant_id, user_id, device_id, name, occurred_at, received_at, "
                "session_id, params, fingerprint) "
                "SELECT %s, %s, NULL, 'screen_view', now() - make_interval(days => %s, secs => i), "
                "now() - make_interval(days => %s, secs => i), 's-' || (i / 50), '{\"screen\": \"home\"}', "
                "'old-' || i FROM generate_series(%s, %s) AS i",
                [tenant.pk, user.pk, AGE_DAYS, AGE_DAYS, first + 1, last],
            )
            print(f"  {last:,} old events ({time.monotonic() - started:.0f} s)", flush=True)
        cursor.execute("VACUUM ANALYZE devices_event")


def retain_main(spec_json: str) -> None:
    """The retention process: apply_retention for one tenant, report as JSON."""
    spec = json.loads(spec_json)
    os.environ["RETENTION_BATCH_SIZE"] = str(spec["batch_size"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from messaging.retention import apply_retention
    from tenants.models import Tenant

    started = time.monotonic()
    report = apply_retention(tenant=Tenant.objects.get(tenant_id=spec["tenant_id"]))
    print(json.dumps({**report, "wall_s": time.monotonic() - started}))


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parts.path.lstrip("/")))
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="old events to delete")
    parser.add_argument("--batch-size", type=int, default=5000, help="ids per DELETE (RETENTION_BATCH_SIZE)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench_retention")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="rate-limit counters ('' for per-process memory)",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds, before and during")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's database")
    parser.add_argument("--retain", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.retain:
        return retain_main(args.retain)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("retention.py measures PostgreSQL: pass a postgres:// --database-url")
    api_load.forget_redis_if_silent(args)

    load_before = os.getloadavg()[0]
    api_load.ensure_database(args.database_url)
    env = {**api_load.server_env(args), "RETENTION_EVENTS_DAYS": "180"}
    api_load.setup_django(env)
    run = f"retention-{os.getpid()}"
    tenant_id, api_key = api_load.seed(run, args.clients)
    print(f"adding {args.events:,} events received {AGE_DAYS} days ago ...", flush=True)
    generate_started = time.monotonic()
    add_old_events(tenant_id, args.events)
    generate_s = time.monotonic() - generate_started
    port = api_load.free_port()
    server = api_load.start_gunicorn(args, env, port)
    retention = None
    try:
        print(f"POST /events alone: {args.clients} clients, {args.duration:g} s ...", flush=True)
        before = api_load.run_scenario("events", args, port, run, tenant_id, api_key)
        print(f"POST /events while retention deletes {args.events:,} events ...", flush=True)
        spec = json.dumps({"tenant_id": tenant_id, "batch_size": args.batch_size})
        retention_started = time.monotonic()
        retention = subprocess.Popen(
            [sys.executable, __file__, "--retain", spec], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        during = api_load.run_scenario("events", args, port, run, tenant_id, api_key)
        load_ended = time.monotonic() - retention_started
        out, _ = retention.communicate()
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        if retention is not None and retention.poll() is None:
            retention.terminate()
        server.terminate()
        server.wait(timeout=30)

    from django.db import connection

    from devices.models import Event

    left = Event.objects.filter(tenant__tenant_id=run).count()
    old_left = Event.objects.filter(tenant__tenant_id=run, fingerprint__startswith="old-").count()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    connection.close()
    if not args.keep:
        drop_database(args.database_url)

    print(
        f"\nRetention under load, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, PostgreSQL {pg_version}, gunicorn "
        f"gthread {args.workers}x{args.threads}, {args.clients} clients, load average before "
        f"{load_before:.2f}"
    )
    print(f"{args.events:,} old events generated in {generate_s:.0f} s\n")
    print(
        f"{'POST /events':<28} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'errors':>7}"
    )
    for name, row in (("before (no retention)", before), ("during retention", during)):
        print(
            f"{name:<28} {row['requests']:>9} {row['rps']:>8.0f} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['errors']:>7}"
        )
    wall = report["wall_s"]
    print(
        f"\nretention: {report['events']:,} events deleted in {report['batches']:,} batches of "
        f"{args.batch_size:,}, {wall:.1f} s ({report['events'] / wall:,.0f} rows/s, "
        f"{1000 * wall / max(report['batches'], 1):.0f} ms per batch)"
    )
    if wall < load_ended:
        print(f"note: retention finished after {wall:.0f} s, before the {load_ended:.0f} s of load ended")
    print(f"old events left: {old_left} (expected 0); events stored by /events kept: {left - old_left}")


if __name__ == "__main__":
    main()
