#!/usr/bin/env python
"""Segments at scale on PostgreSQL: size the demo segments, and fan a segment message out.

    .venv/bin/python bench/segments.py --scale 1      # 1,000,000 users, 10,000,000 events
    .venv/bin/python bench/segments.py --scale 0.1    # a tenth: 100,000 users, 1,000,000 events
    .venv/bin/python bench/segments.py --keep --skip-fan-out --explain   # counts only, with plans

Generates users (with one device each, a fifth with a second one), and events with params
(`purchase` with `amount`, `cart_add`, `app_open`, `level_complete`) over 90 days, in the
order they happened, server-side with INSERT … SELECT over generate_series. Then times
`audiences.selectors.count` for each saved demo segment (interleaved rounds, medians; goal
< 1 s) and the PostgreSQL backend's CPU for the same counts (serial), and the fan-out
(devices turned into deliveries per second, sending left out) of a message to a segment
against one to everyone, interleaved in the same run (goal: the segment's rate at least
80 % of everyone's). bench/README.md has the figures and how to read them.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["TASK_BACKEND"] = "database"
    os.environ.setdefault("FCM_SANDBOX_ENABLED", "1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def generate(tenant, users: int, events: int) -> None:
    from django.db import connection

    t = tenant.pk
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO devices_appuser (tenant_id, app_user_id, is_anonymous, language, country, timezone,
                                         first_seen_at, last_seen_at)
            SELECT %s, 'u' || i, i %% 7 = 0,
                   (ARRAY['tr','en','de','es','fr','pt','ja','ar'])[1 + i %% 8],
                   (ARRAY['TR','US','DE','ES','FR','BR','JP','EG'])[1 + i %% 8], 'UTC',
                   now() - interval '120 days' * random(), now() - interval '30 days' * random()
            FROM generate_series(1, %s) AS i""",
            [t, users],
        )
        cursor.execute(
            """
            INSERT INTO devices_device (tenant_id, user_id, token, token_hash, token_kind, platform,
                push_permission, is_active, deactivation_reason, last_session_id, created_at, last_seen_at,
                token_updated_at)
            SELECT u.tenant_id, u.id, 'tok-' || u.id || '-' || k, md5('tok-' || u.id || '-' || k),
                   'registration',
                   (ARRAY['android','ios','web'])[1 + (u.id + k) %% 3], random() < 0.8, true, '', '',
                   now(), now(), now()
            FROM devices_appuser u CROSS JOIN generate_series(1, 2) AS k
            WHERE u.tenant_id = %s AND (k = 1 OR u.id %% 5 = 0)""",
            [t],
        )
    generate_events(tenant, events)


def generate_events(tenant, events: int) -> None:
    """`events` events of the tenant's users, written in the order they happened, as /events
    appends them (an app sends its events seconds after they occur): the table's pages follow
    time, so the last 14 days are the table's last pages, not a sixth of every page."""
    from django.db import connection

    t = tenant.pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM devices_event WHERE tenant_id <> %s LIMIT 1", [t])
        if cursor.fetchone():
            cursor.execute("DELETE FROM devices_event WHERE tenant_id = %s", [t])
        else:
            # Only this tenant's events: the rows referring to them (pending triggers) go too.
            cursor.execute("TRUNCATE devices_event CASCADE")
        cursor.execute("SELECT min(id), max(id) FROM devices_appuser WHERE tenant_id = %s", [t])
        low, high = cursor.fetchone()
        # Loading 10,000,000 rows into a table with five indexes costs a random index write per
        # row and index: drop the plain indexes (not the constraints') and build them once after.
        cursor.execute(
            """
            SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = 'devices_event'::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"""
        )
        dropped = cursor.fetchall()
        for name, _ in dropped:
            cursor.execute(f'DROP INDEX "{name}"')
        batch = 1_000_000
        for start in range(0, events, batch):
            cursor.execute(
                """
                INSERT INTO devices_event (tenant_id, user_id, name, occurred_at, received_at, session_id,
                                           params, fingerprint)
                SELECT %s, %s + floor(random() * (%s - %s + 1))::bigint, e.name,
                       e.at, e.at + interval '5 seconds' * random(), 's',
                       CASE e.name
                         WHEN 'purchase' THEN jsonb_build_object(
                             'amount', round((random() * 200)::numeric, 2), 'currency', 'EUR')
                         WHEN 'cart_add' THEN jsonb_build_object('sku', 'SKU-' || (i %% 900 + 100))
                         WHEN 'level_complete' THEN jsonb_build_object('level', i %% 40 + 1)
                         ELSE jsonb_build_object('source', 'launcher') END,
                       'bench-' || i
                FROM (SELECT i, (ARRAY['app_open','app_open','app_open','app_open','app_open',
                                       'cart_add','cart_add','level_complete','level_complete','purchase'])
                                [1 + (i::bigint * 7919) %% 10] AS name,
                             now() - interval '90 days' * ((%s - i)::float8 / %s)
                                   - interval '1 minute' * random() AS at
                      FROM generate_series(%s, %s) AS i) AS e""",
                [t, low, high, low, events, events, start + 1, min(start + batch, events)],
            )
            print(f"  events {min(start + batch, events):,}", flush=True)
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in dropped:
            cursor.execute(definition)
            print(f"  index {name} rebuilt", flush=True)
        # What autovacuum would do soon after such a load: statistics, and the visibility map
        # index-only scans need.
        cursor.execute("VACUUM (ANALYZE) devices_appuser, devices_device, devices_event")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fan_out_rate(tenant, audience: str, params: dict) -> tuple[float, int]:
    """Deliveries created per second by one fan-out (sending left to the queued tasks, which
    nothing runs here), and how many; then leaves no rows or tasks behind for the next one."""
    from django.db import connection
    from django.utils import timezone

    from messaging.models import Message

    message = Message.objects.create(
        tenant=tenant,
        title="bench",
        body="bench",
        audience=audience,
        audience_params=params,
        status=Message.Status.SENDING,
        started_at=timezone.now(),
    )
    seconds, _ = timed(lambda: fan_out_to_the_end(message.pk))
    message.refresh_from_db()
    assert message.fanned_out_at is not None, "the fan-out did not finish"
    count = message.targeted_count
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_delivery WHERE message_id = %s", [message.pk])
        cursor.execute("DELETE FROM django_tasks_database_dbtaskresult")
    return count / seconds if seconds else 0.0, count


def fan_out_to_the_end(message_id: int) -> None:
    """The message's whole fan-out, as a worker runs it: the first task, then each
    continuation it queued (a task of its own every FANOUT_TASK_CHUNKS chunks), read back
    from the task table; the send tasks it queued are left alone."""
    from django_tasks_db.models import DBTaskResult

    from messaging.services import fan_out

    fan_out(message_id=message_id)
    while task := (
        DBTaskResult.objects.filter(task_path="messaging.tasks.fan_out_message", status="READY")
        .order_by("enqueued_at")
        .first()
    ):
        args = task.args_kwargs
        task.delete()
        fan_out(
            **dict(zip(("message_id", "after_device_id", "first_chunk"), args["args"], strict=False)),
            **args["kwargs"],
        )


def explain(tenant, segments) -> None:
    """The plans of the queries a count runs, as they ran (EXPLAIN ANALYZE, BUFFERS): the
    buffers a plan touches do not depend on the machine's load, its times do."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audiences.selectors import count

    for name, segment in segments.items():
        with CaptureQueriesContext(connection) as queries:
            count(segment.tenant, segment.rules)
        for query in queries.captured_queries:
            if not query["sql"].lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                plan = "\n    ".join(row[0] for row in cursor.fetchall())
            print(f"\n  {name}:\n    {query['sql']}\n    {plan}", flush=True)


def two_queries(tenant, rules: dict) -> dict[str, int]:
    """The count as it was before issue 14: users, then devices, each query running the rules."""
    from audiences.selectors import devices_matching, jit_off, users_matching

    with jit_off():
        return {
            "users": users_matching(tenant, rules).count(),
            "devices": devices_matching(tenant, rules).count(),
        }


def backend_cpu_seconds():
    """A function returning the CPU seconds this connection's PostgreSQL backend has used, or
    None when the server's processes are not readable here (a database on another host)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    stat = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    try:
        cpu()
    except OSError:
        return None
    return cpu


def median(values):
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 1,000,000 users and 10,000,000 events")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench_segments")
    parser.add_argument("--keep", action="store_true", help="reuse the data of an earlier run")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds of counts (medians reported)"
    )
    parser.add_argument("--fan-out-rounds", type=int, default=3, help="interleaved rounds of fan-outs")
    parser.add_argument("--generate-only", action="store_true", help="load the data, measure nothing")
    parser.add_argument("--new-events", action="store_true", help="with --keep: generate the events again")
    parser.add_argument("--skip-fan-out", action="store_true", help="time the counts only")
    parser.add_argument("--explain", action="store_true", help="print each count query's EXPLAIN ANALYZE")
    parser.add_argument(
        "--compare-two-queries",
        action="store_true",
        help="also time the earlier count (users, then devices: the rules run twice), interleaved",
    )
    args = parser.parse_args()
    users, events = int(1_000_000 * args.scale), int(10_000_000 * args.scale)
    create_database(args.database_url)
    setup_django(args.database_url)

    from audiences.models import Segment
    from audiences.selectors import count
    from audiences.services import create_segment
    from fcm_sandbox.management.commands.demo import DEMO_SEGMENTS
    from tenants.models import Tenant

    tenant = Tenant.objects.filter(tenant_id="bench-segments").first()
    if tenant is None or not args.keep:
        Tenant.objects.filter(tenant_id="bench-segments").delete()
        tenant = Tenant.objects.create(name="Bench", tenant_id="bench-segments")
        print(f"Generating {users:,} users and {events:,} events …", flush=True)
        seconds, _ = timed(lambda: generate(tenant, users, events))
        print(f"  generated in {seconds:.0f} s", flush=True)
    elif args.new_events:
        print(f"Generating {events:,} events …", flush=True)
        seconds, _ = timed(lambda: generate_events(tenant, events))
        print(f"  generated in {seconds:.0f} s", flush=True)
    if args.generate_only:
        return
    from django.db import connection

    from devices.models import AppUser, Device, Event

    users = AppUser.objects.filter(tenant=tenant).count()
    devices = Device.objects.filter(tenant=tenant).count()
    events = Event.objects.filter(tenant=tenant).count()
    Segment.objects.filter(tenant=tenant).delete()
    segments = {
        name: create_segment(tenant=tenant, name=name, rules=rules) for name, rules in DEMO_SEGMENTS.items()
    }

    # Every round times each segment once, in turn: a burst of load from the machine's other
    # users lands on all of them alike, and the median of the rounds sets it aside.
    print(
        f"\nSegment sizes ({users:,} users, {devices:,} devices, {events:,} events; "
        f"{args.rounds} interleaved rounds):",
        flush=True,
    )
    # With --compare-two-queries each round also runs the earlier count right after the
    # current one, so both see the same moment's load.
    counters = {"": count}
    if args.compare_two_queries:
        counters = {" (one query)": count, " (two queries)": two_queries}
    jobs = {
        name + label: (segment, fn) for name, segment in segments.items() for label, fn in counters.items()
    }
    times = {job: [] for job in jobs}
    sizes = {}
    for _ in range(args.rounds):
        for job, (segment, fn) in jobs.items():
            seconds, sizes[job] = timed(lambda s=segment, fn=fn: fn(tenant, s.rules))
            times[job].append(seconds)
    for job, seconds in times.items():
        print(
            f"  {job:45} median {median(seconds) * 1000:6.0f} ms  (best {min(seconds) * 1000:5.0f}, "
            f"worst {max(seconds) * 1000:5.0f})  {sizes[job]['users']:>9,} users "
            f"{sizes[job]['devices']:>9,} devices",
            flush=True,
        )
    cpu = backend_cpu_seconds()
    if cpu is not None:
        # The database's own CPU for each count, run serially (no parallel workers, whose CPU
        # this would not see): a figure the machine's other load hardly moves, close to what
        # the count would take alone on one idle core.
        with connection.cursor() as cursor:
            cursor.execute("SET max_parallel_workers_per_gather = 0")
        spent = {job: [] for job in jobs}
        for _ in range(args.rounds):
            for job, (segment, fn) in jobs.items():
                before = cpu()
                fn(tenant, segment.rules)
                spent[job].append(cpu() - before)
        with connection.cursor() as cursor:
            cursor.execute("RESET max_parallel_workers_per_gather")
        print(
            "\nThe same counts' CPU time in the PostgreSQL backend, serial (no parallel workers):", flush=True
        )
        for job, seconds in spent.items():
            print(f"  {job:45} median {median(seconds) * 1000:6.0f} ms", flush=True)
    if args.explain:
        explain(tenant, segments)
    if args.skip_fan_out:
        return

    print("\nFan-out (deliveries created per second; sending not included), interleaved rounds:", flush=True)
    audiences = {"everyone": ("all", {})}
    for name in ("bought over 50 in 14 days", "Turkish speakers on Android"):
        audiences[name] = ("segment", {"segment_id": segments[name].pk})
    rates = {name: [] for name in audiences}
    counts = {}
    for round_number in range(1, args.fan_out_rounds + 1):
        line = []
        for name, (audience, params) in audiences.items():
            rate, counts[name] = fan_out_rate(tenant, audience, params)
            rates[name].append(rate)
            line.append(f"{name} {rate:,.0f}/s")
        ratios = [rates[name][-1] / rates["everyone"][-1] for name in audiences if name != "everyone"]
        print(
            f"  round {round_number}: " + ", ".join(line) + "; " + " / ".join(f"{r:.0%}" for r in ratios),
            flush=True,
        )
    everyone = median(rates["everyone"])
    for name in audiences:
        ratios = [rate / base for rate, base in zip(rates[name], rates["everyone"], strict=True)]
        print(
            f"  {name:30} median {median(rates[name]):9,.0f}/s  {counts[name]:>9,} devices  "
            f"{median(rates[name]) / everyone:.0%} of everyone's median "
            f"(median of the rounds' ratios {median(ratios):.0%})",
            flush=True,
        )


def create_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
