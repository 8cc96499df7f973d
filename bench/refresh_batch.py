#!/usr/bin/env python
"""What one token refresh costs the database side, alone and in a batch: the bound on a queued
refresh (issue 16).

    .venv/bin/python bench/refresh_batch.py --database-url postgres://postgres@127.0.0.1:5432/h_refresh
    .venv/bin/python bench/refresh_batch.py --devices 400 --batch 100 --rounds 7

``POST /devices/refresh-token`` answers 200, 404 or 409 from what its swap did, so its answer
needs a PostgreSQL write. Today the swap is one statement in autocommit (``herald_refresh_token``,
devices 0006, called as ``devices.services`` calls it). The only way to share that write's cost
between requests is a writer that applies many refreshes in one transaction and answers each
request through Redis, as queued ``/events`` does for events. This measures what such a writer
could save at best with today's function: the same calls, one transaction per ``--batch``
refreshes instead of one per refresh.

Every round rotates the token of each of ``--devices`` devices once in each mode (the order of
the modes reversed every other round), in this process on one connection, and reads this
process's CPU (the client's side: arguments, psycopg, Django's cursor, the returned row) and
its PostgreSQL backend's (``/proc``, 10 ms ticks: hence hundreds of refreshes per round), and the
WAL the server wrote meanwhile (``pg_current_wal_lsn()``: the whole server's, so nothing else may
write during the run; unlike CPU it does not move with the machine's load). Prints the medians per
mode and the batch's ratio to autocommit, round by round. Makes a tenant of its
own and deletes it at the end; nothing else is touched.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_load import cpu_seconds  # noqa: E402


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdef0123456789")
    os.environ["CONN_MAX_AGE"] = "36000"  # one backend for the whole run: its CPU is read by pid
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench_refresh")
    parser.add_argument("--devices", type=int, default=400, help="refreshes per mode per round")
    parser.add_argument("--batch", type=int, default=100, help="refreshes per transaction in batch mode")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    setup(args.database_url)

    from django.db import connection, transaction
    from django.utils import timezone

    from devices import services
    from tenants.models import Tenant

    if connection.vendor != "postgresql":
        raise SystemExit("refresh_batch.py measures the PostgreSQL swap: give --database-url postgres://…")
    tenant = Tenant.objects.create(name="Refresh batch bench", tenant_id=f"refresh-batch-{os.getpid()}")
    base = [f"bench-refresh-{os.getpid()}-{i:05d}-" + "t" * 120 for i in range(args.devices)]
    for token in base:  # the devices, as a first event makes them
        services.record_event(
            tenant=tenant,
            event=services.EventInput(
                event_name="app_open",
                event_time=timezone.now(),
                device_token=token,
                platform="android",
                push_permission_granted=True,
                timezone="Europe/Berlin",
                language="de",
                country="DE",
                session_id="s-1",
            ),
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE devices_device; ANALYZE devices_tokenrotation")
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    current = dict(zip(base, base, strict=True))
    generation = 0

    def rotate(token: str) -> None:
        nonlocal generation
        generation += 1
        new = f"{token[:60]}-r{generation}"
        swapped = services._refresh_token_postgresql(
            tenant=tenant, old_token=current[token], new_token=new, app_user_id="", platform=""
        )
        if swapped is None:
            raise SystemExit(f"the swap of {token[:30]}… changed nothing")
        current[token] = new

    def wal_position() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
            return int(cursor.fetchone()[0])

    def run(mode: str) -> tuple[float, float, float]:
        wal = wal_position()
        pg, client = cpu_seconds(backend), time.process_time()
        if mode == "autocommit":
            for token in base:
                rotate(token)
        else:
            for start in range(0, len(base), args.batch):
                with transaction.atomic():
                    for token in base[start : start + args.batch]:
                        rotate(token)
        n = len(base)
        pg, client = (cpu_seconds(backend) - pg) / n * 1000, (time.process_time() - client) / n * 1000
        return pg, client, (wal_position() - wal) / n

    modes = ("autocommit", f"batch of {args.batch}")
    figures: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    print(
        f"refresh_batch: {args.devices} refreshes per mode per round, {args.rounds} rounds, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for round_number in range(args.rounds):
        for mode in modes if round_number % 2 == 0 else tuple(reversed(modes)):
            figures[mode].append(run(mode))
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print(f"{'mode':<16} {'PostgreSQL CPU ms/refresh (rounds)':<60} {'client CPU ms':>14} {'WAL bytes':>10}")
    for mode in modes:
        rounds = figures[mode]
        pg = statistics.median(r[0] for r in rounds)
        client = statistics.median(r[1] for r in rounds)
        wal = statistics.median(r[2] for r in rounds)
        print(
            f"{mode:<16} {pg:>6.3f} ({', '.join(f'{r[0]:.3f}' for r in rounds)})".ljust(77)
            + f"{client:>14.3f} {wal:>10.0f}"
        )
    ratios = [b[0] / a[0] for a, b in zip(figures[modes[0]], figures[modes[1]], strict=True) if a[0]]
    print(
        f"batch / autocommit, PostgreSQL, by round: {', '.join(f'{r:.2f}' for r in ratios)}"
        f" (median {statistics.median(ratios):.2f})"
    )
    tenant.delete()


if __name__ == "__main__":
    main()
