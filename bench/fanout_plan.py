#!/usr/bin/env python
"""The fan-out's device query on a fresh, never-analyzed table: plans and timings.

    .venv/bin/python bench/fanout_plan.py --database-url postgres://postgres@127.0.0.1:5432/plan

Makes --devices (1,000,000) targetable devices of one tenant (and 1,000 of another) with
`generate_series`, autovacuum off on those tables so that no statistics exist, and runs
EXPLAIN ANALYZE on the fan-out's queries for "android devices" (a filter audience): one
chunk as a keyset page (`id > last ORDER BY id LIMIT 500`) at the start and the middle of
the tenant, as PostgreSQL plans it and as the fan-out runs it now (bitmap scans and sorts
off), and the whole ordered stream (what the server-side cursor runs once). Then the
fan-out's own reads (`_device_chunks`): all of them and one task's FANOUT_TASK_CHUNKS
chunks from the middle, through the cursor (before) and in pages (now); the audiences that
still read through the cursor (users, tokens, rules), as planned and with the id-order walk
forced on them; and the first lines again with the index this branch replaced ((tenant,
is_active, push_permission), without id) in place of device_targetable_id_idx. PostgreSQL
only; give it an empty database, and drop it afterwards.
"""

import argparse
import contextlib
import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument(
        "--passes", type=int, default=3, help="interleaved passes of the before/now comparison"
    )
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from django.conf import settings
    from django.utils import timezone

    from audiences.rules import parse
    from messaging.models import Message
    from messaging.selectors import message_devices
    from messaging.services import _device_chunks, _fan_out_reads, _planner_settings
    from tenants.models import Tenant

    big = Tenant.objects.create(name="Big", tenant_id="plan-big")
    small = Tenant.objects.create(name="Small", tenant_id="plan-small")
    with connection.cursor() as cursor:
        for table in ("devices_appuser", "devices_device"):
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        started = time.perf_counter()
        # The small tenant's devices before and after the big one's: ids interleave as they would.
        for tenant, count, batch in ((small, 1000, "a"), (big, args.devices, "b"), (small, 1000, "c")):
            cursor.execute(
                "INSERT INTO devices_appuser (tenant_id, app_user_id, is_anonymous, language, country, "
                "timezone, first_seen_at, last_seen_at) SELECT %s, %s || i, false, 'en', 'TR', '', "
                "now(), now() FROM generate_series(1, %s) i",
                [tenant.pk, f"u{batch}-", count],
            )
        cursor.execute(
            "INSERT INTO devices_device (tenant_id, user_id, token, token_hash, token_kind, platform, "
            "push_permission, is_active, deactivation_reason, last_session_id, created_at, last_seen_at, "
            "token_updated_at) SELECT u.tenant_id, u.id, 'tok-' || u.id, "
            "encode(sha256(convert_to('tok-' || u.id, 'UTF8')), 'hex'), "
            "'registration', CASE WHEN u.id % 3 = 0 THEN 'ios' ELSE 'android' END, u.id % 10 <> 0, true, "
            "'', '', now(), now(), now() FROM devices_appuser u ORDER BY u.id"
        )
        print(f"made {args.devices:,} + 2,000 devices in {time.perf_counter() - started:.0f} s")
        cursor.execute(
            "SELECT relname, last_analyze, last_autoanalyze FROM pg_stat_user_tables "
            "WHERE relname IN ('devices_device', 'devices_appuser')"
        )
        for row in cursor.fetchall():
            print("statistics:", row)
        cursor.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename IN ('devices_device', 'devices_appuser')"
        )
        print("pg_stats rows for the two tables:", cursor.fetchone()[0])

    message = Message(tenant=big, audience="filter", audience_params={"platforms": ["android"]})
    devices = message_devices(message).order_by("pk").values_list("pk", "user_id", "user__language")
    middle = big.devices.order_by("pk").values_list("pk", flat=True)[args.devices // 2]
    in_id_order = {
        "enable_bitmapscan": "off",
        "enable_sort": "off",
    }  # what _fan_out_reads sets for a task's pages

    def explain(label: str, queryset, *, planner=None, runs: int = 2, quiet: bool = False) -> float:
        sql, params = queryset.query.sql_with_params()
        with _planner_settings(**planner) if planner else contextlib.nullcontext():
            with connection.cursor() as cursor:
                for _ in range(runs):  # the last, with the pages the first read in memory
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                    plan = [line for (line,) in cursor.fetchall()]
        took = next(line for line in plan if line.startswith("Execution Time"))
        shape = " / ".join(line.strip() for line in plan if "Scan" in line or "Sort" in line)[:400]
        if not quiet:
            print(f"  {label}: {took}\n      {shape}", flush=True)
        return float(took.split()[2])

    def read_chunks(
        label: str, queryset, *, paged: bool, chunks: int | None = None, quiet: bool = False
    ) -> tuple[float, float]:
        """The fan-out's own reads (_device_chunks), paged or through the cursor: wall and
        this process's CPU, in ms."""
        started, cpu = time.perf_counter(), time.process_time()
        times, rows = [], 0
        reader = _device_chunks(queryset, 500, paged=paged)
        try:
            with _fan_out_reads(paged=paged):  # the task's planner settings, as fan_out sets them
                for chunk in itertools.islice(reader, chunks):
                    now = time.perf_counter()
                    times.append(now - started)
                    started, rows = now, rows + len(chunk)
        finally:
            reader.close()
        cpu = 1000 * (time.process_time() - cpu)
        if quiet:
            return 1000 * sum(times), cpu
        later = sorted(1000 * t for t in times[1:])
        print(
            f"  {label}: {rows:,} devices in {1000 * sum(times):,.0f} ms; first chunk after "
            f"{1000 * times[0]:,.1f} ms, then median {later[len(later) // 2]:.2f} ms, "
            f"max {later[-1]:.1f} ms per chunk of 500",
            flush=True,
        )
        return 1000 * sum(times), cpu

    def explain_all(heading: str, *, now: bool) -> None:
        print(heading)
        explain("first chunk (keyset page), as planned", devices.filter(pk__gt=0)[:500])
        explain("middle chunk (keyset page), as planned", devices.filter(pk__gt=middle)[:500])
        if now:
            explain(
                "first chunk (keyset page), bitmap scans and sorts off: the fan-out's page now",
                devices.filter(pk__gt=0)[:500],
                planner=in_id_order,
            )
            explain(
                "middle chunk (keyset page), bitmap scans and sorts off: the fan-out's page now",
                devices.filter(pk__gt=middle)[:500],
                planner=in_id_order,
            )
        explain("whole stream (the cursor's query)", devices)
        read_chunks("_device_chunks through the cursor (the fan-out before)", devices, paged=False)
        if not now:
            return
        read_chunks("_device_chunks in pages (the fan-out now)", devices, paged=True)
        # A continuation task: FANOUT_TASK_CHUNKS chunks from the middle of the audience.
        rest = devices.filter(pk__gt=middle)
        task = settings.FANOUT_TASK_CHUNKS
        read_chunks(
            f"a task's {task} chunks from the middle, through the cursor", rest, paged=False, chunks=task
        )
        read_chunks(f"a task's {task} chunks from the middle, in pages", rest, paged=True, chunks=task)

    def compare(passes: int) -> None:
        """Before (as planned / the cursor) beside now (forced / pages), interleaved: medians."""
        task, rest = settings.FANOUT_TASK_CHUNKS, devices.filter(pk__gt=middle)
        first_page, middle_page = devices.filter(pk__gt=0)[:500], devices.filter(pk__gt=middle)[:500]
        cases = {
            "page at the start, EXPLAIN ANALYZE ms": (
                lambda: explain("", first_page, runs=1, quiet=True),
                lambda: explain("", first_page, planner=in_id_order, runs=1, quiet=True),
            ),
            "page in the middle, EXPLAIN ANALYZE ms": (
                lambda: explain("", middle_page, runs=1, quiet=True),
                lambda: explain("", middle_page, planner=in_id_order, runs=1, quiet=True),
            ),
            f"first task's {task} chunks, wall ms / client CPU ms": (
                lambda: read_chunks("", devices, paged=False, chunks=task, quiet=True),
                lambda: read_chunks("", devices, paged=True, chunks=task, quiet=True),
            ),
            f"a task's {task} chunks from the middle, wall ms / client CPU ms": (
                lambda: read_chunks("", rest, paged=False, chunks=task, quiet=True),
                lambda: read_chunks("", rest, paged=True, chunks=task, quiet=True),
            ),
            "the whole audience in one task, wall ms / client CPU ms": (
                lambda: read_chunks("", devices, paged=False, quiet=True),
                lambda: read_chunks("", devices, paged=True, quiet=True),
            ),
        }
        results = {label: ([], []) for label in cases}
        for _ in range(passes):
            for label, runs in cases.items():
                for got, run in zip(results[label], runs, strict=True):
                    got.append(run())
        print(
            f"medians of {passes} interleaved passes: before (as planned, the cursor) / now (pages, forced)"
        )
        for label, (before, now) in results.items():

            def median(values):
                values = sorted(values)
                if isinstance(values[0], tuple):
                    return " / ".join(f"{sorted(v)[len(v) // 2]:,.1f}" for v in zip(*values, strict=True))
                return f"{values[len(values) // 2]:,.2f}"

            print(f"  {label}: {median(before)}  |  {median(now)}", flush=True)

    explain_all("with device_targetable_id_idx (tenant, is_active, push_permission, id):", now=True)
    if args.passes > 1:
        compare(args.passes)

    # The audiences read through the cursor: their plans as PostgreSQL picks them, and what
    # forcing the id-order walk on them would do.
    ids = list(big.app_users.order_by("pk").values_list("app_user_id", flat=True)[args.devices // 2 :][:3])
    language = {"type": "property", "property": "language", "op": "in", "value": ["en"]}
    others = {
        "users, 3 ids": ("users", {"app_user_ids": ids}),
        "tokens, 3": (
            "tokens",
            {
                "tokens": [
                    f"tok-{i}" for i in big.app_users.filter(app_user_id__in=ids).values_list("pk", flat=True)
                ]
            },
        ),
        "rules, 3 app user ids": (
            "rules",
            {"rules": parse({"include": [[{**language, "property": "app_user_id", "value": ids}]]})},
        ),
        "rules, language en (all)": ("rules", {"rules": parse({"include": [[language]]})}),
    }
    print("the cursor's audiences (whole stream), as planned / with bitmap scans and sorts off:")
    for label, (audience, params) in others.items():
        other = Message(tenant=big, audience=audience, audience_params=params, started_at=timezone.now())
        stream = message_devices(other).order_by("pk").values_list("pk", "user_id", "user__language")
        explain(f"{label}, as planned", stream, runs=1)
        explain(f"{label}, bitmap scans and sorts off", stream, planner=in_id_order, runs=1)

    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX device_targetable_id_idx")
        cursor.execute(
            "CREATE INDEX device_targetable_idx ON devices_device (tenant_id, is_active, push_permission)"
        )
    explain_all("with the index before (tenant, is_active, push_permission):", now=False)


if __name__ == "__main__":
    main()
