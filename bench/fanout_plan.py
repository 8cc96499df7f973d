#!/usr/bin/env python
"""The fan-out's device query on a fresh, never-analyzed table: plans and timings.

    .venv/bin/python bench/fanout_plan.py --database-url postgres://postgres@127.0.0.1:5432/plan

Makes --devices (1,000,000) targetable devices of one tenant (and 1,000 of another) with
`generate_series`, autovacuum off on those tables so that no statistics exist, and runs
EXPLAIN ANALYZE on the fan-out's queries: one chunk as a keyset page (what SQLite runs per
chunk: `id > last ORDER BY id LIMIT 500`) at the start and the middle of the tenant, and
the whole ordered stream (what PostgreSQL's server-side cursor runs once). Then the same
with the index this branch replaced ((tenant, is_active, push_permission), without id) in
place of device_targetable_id_idx. PostgreSQL only; the database is dropped and made anew.
"""

import argparse
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
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from messaging.models import Message
    from messaging.selectors import message_devices
    from messaging.services import _device_chunks
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
            "token_updated_at) SELECT u.tenant_id, u.id, 'tok-' || u.id, md5(u.id::text) || md5(u.id::text), "
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

    def explain(label: str, queryset) -> None:
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            for _ in range(2):  # the second, with the pages the first read in memory
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = [line for (line,) in cursor.fetchall()]
        took = next(line for line in plan if line.startswith("Execution Time"))
        shape = " / ".join(line.strip() for line in plan if "Scan" in line or "Sort" in line)[:400]
        print(f"  {label}: {took}\n      {shape}")

    def explain_all(heading: str) -> None:
        print(heading)
        explain("first chunk (keyset page)", devices.filter(pk__gt=0)[:500])
        explain("middle chunk (keyset page)", devices.filter(pk__gt=middle)[:500])
        explain("whole stream (the cursor's query)", devices)
        # What the fan-out does on PostgreSQL: the stream through a server-side cursor.
        started = time.perf_counter()
        times, rows = [], 0
        for chunk in _device_chunks(devices, 500):
            now = time.perf_counter()
            times.append(now - started)
            started, rows = now, rows + len(chunk)
        times_ms = sorted(1000 * t for t in times[1:])
        print(
            f"  fan-out's _device_chunks: {rows:,} devices, first chunk after {1000 * times[0]:,.0f} ms, "
            f"then median {times_ms[len(times_ms) // 2]:.2f} ms, max {times_ms[-1]:.1f} ms per chunk of 500"
        )

    explain_all("with device_targetable_id_idx (tenant, is_active, push_permission, id):")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX device_targetable_id_idx")
        cursor.execute(
            "CREATE INDEX device_targetable_idx ON devices_device (tenant_id, is_active, push_permission)"
        )
    explain_all("with the index before (tenant, is_active, push_permission):")


if __name__ == "__main__":
    main()
