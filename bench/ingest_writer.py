#!/usr/bin/env python
"""The queued-ingestion writer alone, on a preloaded stream: CPU per event of the writer
process and of its PostgreSQL backend, for several versions of herald_record_events in one run.

    .venv/bin/python bench/ingest_writer.py --events 10000 --rounds 3
    .venv/bin/python bench/ingest_writer.py --variant old --variant new --variant try=/tmp/f.sql

Each variant is a definition of the batch function: ``old`` is migration devices 0009's,
``new`` the one the migrations install last (devices 0010's), ``name=path.sql`` any file of SQL
(run as is: it is to CREATE OR REPLACE herald_record_events and whatever it needs). Before the
rounds, ``--ballast`` events of another tenant (a device and a user per ten), so that the tables
are not toy-sized. Every round runs each variant once, the order reversed every other round, in
this process:

1. a fresh tenant; 0009's function installed for the warm-up: one event per token, 45 s of
   request time before the measured ones, drained, so that the devices and users exist
   (``--new-devices`` leaves that share of the tokens unseen until the measured part); then
   VACUUM ANALYZE of the four tables (autovacuum may be off: every run plans with fresh
   statistics and starts without the earlier runs' dead rows) and the variant's function;
2. ``--events`` documents appended to the stream at once (no writer running), shaped as
   bench/api_load.py's clients send them: ``--clients`` clients of ``--devices`` devices
   each, every device with a named user of its own, the client's session id changing every 50
   of its events, the request times ``1 / --rate`` seconds apart (so a device's last_seen_at
   is written again once a minute, as on the direct path);
3. ``manage.py herald_ingest --drain`` (``--batch``) in this process, timed: this process's
   CPU (the writer's: parsing, Redis, the call) and its PostgreSQL backend's (from /proc, with
   10 ms ticks: hence thousands of events per run), over the events stored.

Then the medians per variant, and each variant's ratio of PostgreSQL CPU to the first one's,
round by round. Needs PostgreSQL and Redis (nothing but its own tenants is touched; the ingest
stream must be empty at the start, and nothing else may consume it meanwhile).
"""

import argparse
import io
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_load import cpu_seconds  # noqa: E402


def setup(args) -> None:
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["REDIS_URL"] = args.redis_url
    os.environ["EVENTS_INGEST"] = "queue"
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdef0123456789")
    os.environ["CONN_MAX_AGE"] = "36000"  # one backend for the whole run: its CPU is read by pid
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def variant_sql(spec: str) -> tuple[str, str]:
    from importlib import import_module

    if spec == "old":
        return spec, import_module("devices.migrations.0009_record_events_function").RECORD_EVENTS
    if spec == "new":
        module = import_module("devices.migrations.0010_record_events_set_based")
        return spec, module.RECORD_EVENTS
    name, _, path = spec.partition("=")
    return name, Path(path).read_text()


def documents(args, tenant, *, start: datetime, tokens_from: int = 0) -> list[dict]:
    """The measured documents: api_load's clients' events, 1 / rate seconds apart."""
    from devices import ingest, services

    run = tenant.tenant_id
    docs = []
    step = timedelta(seconds=1 / args.rate)
    per_client = [0] * args.clients
    for i in range(args.events):
        client = i % args.clients
        n = per_client[client]
        per_client[client] += 1
        device = n % args.devices
        now = start + i * step
        event = services.EventInput(
            event_name="screen_view",
            event_time=now - timedelta(milliseconds=5),
            device_token=f"{run}-ev-{client}-{device}-" + "x" * 120,
            platform="android",
            push_permission_granted=True,
            timezone="Europe/Istanbul",
            language="tr",
            country="TR",
            session_id=f"s-{client}-{n // 50}",
            app_user_id=f"{run}-ev-user-{client}-{device}",
            params={"screen": "home", "n": n},
        )
        docs.append(ingest.document_of(tenant=tenant, event=event, now=now))
    return docs


def warm_documents(docs: list[dict], *, new_share: float, at: datetime) -> list[dict]:
    """One earlier event per token of `docs` (bar the share left new), at `at`."""
    first: dict[str, dict] = {}
    for doc in docs:
        first.setdefault(doc["token_hash"], doc)
    keep = list(first.values())[int(len(first) * new_share) :]
    warm = []
    for doc in keep:
        w = dict(doc)
        w["now"] = at.isoformat()
        w["seen_since"] = (at - timedelta(seconds=60)).isoformat()
        w["session_id"] = "warm"
        w["fingerprint"] = "warm" + doc["fingerprint"][4:]
        warm.append(w)
    return warm


def ballast(count: int) -> int | None:
    """A tenant with `count` events (a device and a user per 10), so that the tables and their
    indexes are not toy-sized; returns its pk."""
    from django.db import connection

    from tenants.models import Tenant

    if not count:
        return None
    tenant = Tenant.objects.create(name="writer bench ballast", tenant_id=f"wb-{os.getpid()}-ballast")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO devices_appuser (tenant_id, app_user_id, is_anonymous, language, country, timezone,
                                         first_seen_at, last_seen_at)
            SELECT %(t)s, 'ballast-' || i, false, 'en', 'GB', 'Europe/London', now(), now()
            FROM generate_series(1, %(n)s / 10) i;
            INSERT INTO devices_device (tenant_id, user_id, token, token_hash, token_kind, platform,
                push_permission, is_active, deactivated_at, deactivation_reason, last_session_id,
                created_at, last_seen_at, token_updated_at)
            SELECT u.tenant_id, u.id, 'tok-' || u.app_user_id,
                   encode(sha256(('tok-' || u.app_user_id)::bytea), 'hex'), 'registration', 'android',
                   true, true, NULL, '', 's', now(), now(), now()
            FROM devices_appuser u WHERE u.tenant_id = %(t)s;
            INSERT INTO devices_event (tenant_id, user_id, device_id, name, occurred_at, received_at,
                                       session_id, params, fingerprint)
            SELECT d.tenant_id, d.user_id, d.id, 'screen_view', now() - i * interval '1 s',
                   now() - i * interval '1 s', 's', jsonb_build_object('n', i), md5(d.id || ':' || i)
            FROM devices_device d, generate_series(1, 10) i WHERE d.tenant_id = %(t)s;
            """,
            {"t": tenant.pk, "n": count},
        )
    return tenant.pk


def enqueue(client, docs: list[dict]) -> None:
    from devices import ingest

    pipe = client.pipeline(transaction=False)
    for i, doc in enumerate(docs):
        pipe.xadd(ingest.STREAM, {"t": str(doc["tenant"]), "d": json.dumps(doc)})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def drain(batch: int) -> None:
    from django.core.management import call_command

    call_command("herald_ingest", "--drain", "--batch", str(batch), stdout=io.StringIO())


def one_run(args, client, name: str, sql: str, round_no: int) -> dict:
    from django.db import connection

    from devices.models import Event
    from tenants.models import Tenant

    tenant = Tenant.objects.create(
        name=f"writer bench {name}", tenant_id=f"wb-{os.getpid()}-{round_no}-{name}"
    )
    try:
        with connection.cursor() as cursor:  # the warm-up through 0009's function, whatever the variant
            cursor.execute(variant_sql("old")[1])
        start = datetime(2026, 11, 30, 12, tzinfo=UTC)
        docs = documents(args, tenant, start=start)
        warm = warm_documents(docs, new_share=args.new_devices, at=start - timedelta(seconds=45))
        enqueue(client, warm)
        drain(args.batch)
        with connection.cursor() as cursor:
            # Autovacuum may be off (it is on the shared bench machine): every run plans with
            # fresh statistics and starts without the previous runs' dead rows.
            cursor.execute("VACUUM ANALYZE tenants_tenant, devices_appuser, devices_device, devices_event")
            cursor.execute(sql)
        enqueue(client, docs)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        stored_before = Event.objects.filter(tenant=tenant).count()
        load = os.getloadavg()[0]
        wall0, cpu0, pg0 = time.perf_counter(), time.process_time(), cpu_seconds(backend)
        drain(args.batch)
        wall, cpu, pg = time.perf_counter() - wall0, time.process_time() - cpu0, cpu_seconds(backend) - pg0
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            if cursor.fetchone()[0] != backend:
                raise SystemExit("the writer's connection changed during the drain: figures void")
        stored = Event.objects.filter(tenant=tenant).count() - stored_before
        if stored != len(docs):
            raise SystemExit(f"{name}: {stored} events stored of {len(docs)}")
        return {
            "variant": name,
            "round": round_no,
            "events": stored,
            "seconds": wall,
            "writer_ms": 1000 * cpu / stored,
            "pg_ms": 1000 * pg / stored,
            "load": load,
        }
    finally:
        if not args.keep:
            Tenant.objects.filter(pk=tenant.pk).delete()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--variant", action="append", help="old, new or name=file.sql (default: old, new)")
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--devices", type=int, default=20, help="devices per client")
    parser.add_argument("--rate", type=float, default=300.0, help="events per second of request time")
    parser.add_argument("--new-devices", type=float, default=0.0, help="share of tokens first seen measured")
    parser.add_argument(
        "--ballast", type=int, default=200000, help="events of another tenant, there throughout"
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup(args)
    import redis

    from devices import ingest

    client = redis.Redis.from_url(args.redis_url)
    if client.xlen(ingest.STREAM):
        raise SystemExit(f"{ingest.STREAM} in {args.redis_url} is not empty")
    variants = [variant_sql(spec) for spec in (args.variant or ["old", "new"])]
    load_start = os.getloadavg()
    rows = []
    ballast_pk = ballast(args.ballast)
    try:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for name, sql in order:
                row = one_run(args, client, name, sql, r)
                rows.append(row)
                print(
                    f"round {r + 1} {name:>8}: {row['events']} events in {row['seconds']:.2f} s, "
                    f"CPU ms/event writer {row['writer_ms']:.3f} + PostgreSQL {row['pg_ms']:.3f}, "
                    f"load {row['load']:.2f}",
                    flush=True,
                )
    finally:
        if ballast_pk and not args.keep:
            from tenants.models import Tenant

            Tenant.objects.filter(pk=ballast_pk).delete()
        # Leave the last variant's function as the migrations installed it.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                variant_sql("new" if any((ROOT / "devices/migrations").glob("0010_*")) else "old")[1]
            )
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
        f"{args.events} events per run, "
        f"--batch {args.batch}, {args.clients * args.devices} tokens, new devices {args.new_devices:.0%}"
    )
    base = variants[0][0]
    for name, _ in variants:
        mine = [row for row in rows if row["variant"] == name]
        pg = statistics.median(row["pg_ms"] for row in mine)
        writer = statistics.median(row["writer_ms"] for row in mine)
        ratios = [
            row["pg_ms"] / other["pg_ms"]
            for row in mine
            for other in rows
            if other["variant"] == base and other["round"] == row["round"]
        ]
        print(
            f"{name:>8}: PostgreSQL {pg:.3f} ms/event (runs {', '.join(f'{r["pg_ms"]:.3f}' for r in mine)}), "
            f"writer {writer:.3f}, "
            f"events/s {statistics.median(r['events'] / r['seconds'] for r in mine):.0f}; "
            f"PostgreSQL / {base} by round: {', '.join(f'{x:.2f}' for x in ratios)} "
            f"(median {statistics.median(ratios):.2f})"
        )
    if args.json:
        print("JSON " + json.dumps(rows))


if __name__ == "__main__":
    main()
