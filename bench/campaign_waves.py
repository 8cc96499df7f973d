#!/usr/bin/env python
"""Campaigns, part 2: a per-user local daily campaign over many users in 30 zones, on PostgreSQL.

    .venv/bin/python bench/campaign_waves.py                     # 1,000,000 users
    .venv/bin/python bench/campaign_waves.py --users 100000      # a tenth
    .venv/bin/python bench/campaign_waves.py --cap 3 --fan-out   # with a frequency cap; deliveries too

Makes a database of its own (dropped at the end unless --keep), a tenant with `--users` app
users spread unevenly over 30 IANA zones from Pacific/Kiritimati (UTC+14) to
Pacific/Pago_Pago (UTC−11), one in 21 without a zone (the tenant's, Europe/Istanbul), each
with one device that allows pushes; users and devices are generated server-side with
INSERT … SELECT over generate_series. Then an active daily campaign at 09:00 in each user's
zone, audience everyone, and the scheduler's own steps at each wave's instant (an injected
clock, no waiting): plan the occurrence (the distinct zones, grouped by instant), then for
each wave claim it and run it (the audience ∩ the wave's zones handed to
`campaigns.services.dispatch`: the per-user ledger, cooldown, cap, devices, rotation, one
Message with its recipient rows). Prints each wave's size and time, and the totals. With
--fan-out, each wave's Message is also fanned out in-process (its delivery rows made; the
sending itself is what bench/fanout.py measures). A second pass of every wave (a second
beat, or a wave re-run after a crash) must send nobody: it is timed too.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# 30 zones and their weights (users per 100): big markets heavier, offsets +14 … −11, with a
# few that share an instant (Berlin/Paris/Rome, New York/Toronto) and half-hour ones.
ZONES = [
    ("Pacific/Kiritimati", 1),
    ("Pacific/Auckland", 2),
    ("Australia/Sydney", 3),
    ("Asia/Tokyo", 5),
    ("Asia/Shanghai", 6),
    ("Asia/Singapore", 3),
    ("Asia/Bangkok", 3),
    ("Asia/Kolkata", 6),
    ("Asia/Kathmandu", 1),
    ("Asia/Dubai", 3),
    ("Europe/Istanbul", 8),
    ("Europe/Moscow", 3),
    ("Africa/Cairo", 3),
    ("Europe/Berlin", 6),
    ("Europe/Paris", 4),
    ("Europe/Rome", 3),
    ("Europe/London", 6),
    ("Africa/Lagos", 3),
    ("Atlantic/Azores", 1),
    ("America/Sao_Paulo", 5),
    ("America/Argentina/Buenos_Aires", 2),
    ("America/St_Johns", 1),
    ("America/New_York", 7),
    ("America/Toronto", 2),
    ("America/Chicago", 4),
    ("America/Denver", 2),
    ("America/Los_Angeles", 4),
    ("America/Anchorage", 1),
    ("Pacific/Honolulu", 1),
    ("Pacific/Pago_Pago", 1),
]
assert len(ZONES) == 30 and sum(w for _, w in ZONES) == 100
NO_ZONE_EVERY = 21  # one user in 21 has no zone (the tenant's); 21 is coprime with the 100 zone buckets


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["TASK_BACKEND"] = "database"  # queued fan-outs wait in a table nobody drains
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)  # DEBUG is off, as in production
    os.environ.setdefault("FCM_SANDBOX_ENABLED", "1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def generate(tenant, users: int) -> None:
    from django.db import connection

    bucket = [name for name, weight in ZONES for _ in range(weight)]  # 100 entries
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO devices_appuser (tenant_id, app_user_id, is_anonymous, language, country, timezone,
                                         first_seen_at, last_seen_at)
            SELECT %s, 'u' || i, false, 'en', 'TR',
                   CASE WHEN i %% %s = 0 THEN '' ELSE (%s::text[])[1 + (i::bigint * 7919) %% 100] END,
                   now(), now()
            FROM generate_series(1, %s) AS i""",
            [tenant.pk, NO_ZONE_EVERY, bucket, users],
        )
        cursor.execute(
            """
            INSERT INTO devices_device (tenant_id, user_id, token, token_hash, token_kind, platform,
                push_permission, is_active, deactivation_reason, last_session_id, created_at, last_seen_at,
                token_updated_at)
            SELECT u.tenant_id, u.id, 'tok-' || u.id, md5('tok-' || u.id), 'registration', 'android',
                   true, true, '', '', now(), now(), now()
            FROM devices_appuser u WHERE u.tenant_id = %s""",
            [tenant.pk],
        )
        cursor.execute("ANALYZE devices_appuser; ANALYZE devices_device")


def run_waves(campaign, occurrence, *, fan_out: bool, label: str) -> list[dict]:
    """Claim and run each planned wave of `occurrence` at its instant; [{due_at, zones, users, …}]."""
    from campaigns import scheduler
    from campaigns.models import CampaignRun, CampaignSend

    rows = []
    while True:
        run = (
            CampaignRun.objects.filter(campaign=campaign, occurrence=occurrence, state="planned")
            .order_by("due_at")
            .first()
        )
        if run is None:
            return rows
        start = time.perf_counter()
        claimed = dict(scheduler.claim_due_runs(now=run.due_at))
        done = scheduler.run_wave(run_id=run.pk, lease=claimed[run.pk], now=run.due_at)
        seconds = time.perf_counter() - start
        fan_seconds = 0.0
        if fan_out and done.recipients:
            from messaging.services import fan_out as fan_out_message

            message_id = CampaignSend.objects.filter(run=done).values_list("message_id", flat=True).first()
            t = time.perf_counter()
            fan_out_message(message_id=message_id)
            fan_seconds = time.perf_counter() - t
        rows.append(
            {
                "due_at": run.due_at,
                "zones": done.zones,
                "users": done.recipients,
                "skipped": done.skipped,
                "seconds": seconds,
                "fan_out": fan_seconds,
            }
        )
        print(
            f"  {label} {run.due_at:%d %H:%M} UTC {done.recipients:>9,} sent {done.skipped:>7,} skipped "
            f"{seconds:7.2f} s"
            + (f" + fan-out {fan_seconds:6.2f} s" if fan_out else "")
            + f"   {', '.join(done.zones)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench_waves")
    parser.add_argument(
        "--cap", type=int, default=None, help="the tenant's marketing pushes per user per day"
    )
    parser.add_argument(
        "--fan-out", action="store_true", help="also fan each wave's message out (deliveries)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse its users)")
    args = parser.parse_args()
    create_database(args.database_url)
    setup_django(args.database_url)

    from django.db import connection

    from campaigns import scheduler, services
    from campaigns.models import Campaign, CampaignRun
    from tenants.models import Tenant

    try:
        tenant = Tenant.objects.filter(tenant_id="bench-waves").first()
        if tenant is None or tenant.app_users.count() != args.users:
            Tenant.objects.filter(tenant_id="bench-waves").delete()
            tenant = Tenant.objects.create(name="Bench", tenant_id="bench-waves", time_zone="Europe/Istanbul")
            print(f"Generating {args.users:,} users in {len(ZONES)} zones (1 in {NO_ZONE_EVERY} in none) …")
            t = time.perf_counter()
            generate(tenant, args.users)
            print(f"  generated in {time.perf_counter() - t:.0f} s", flush=True)
        Tenant.objects.filter(pk=tenant.pk).update(marketing_daily_cap=args.cap)
        tenant.refresh_from_db()
        with connection.cursor() as cursor:  # leave nothing of an earlier run (--keep) behind
            cursor.execute(
                "DELETE FROM messaging_messagerecipient WHERE message_id IN "
                "(SELECT id FROM messaging_message WHERE tenant_id = %s)",
                [tenant.pk],
            )
        Campaign.objects.filter(tenant=tenant).delete()
        tenant.messages.all().delete()

        activated = datetime(2027, 1, 4, 12, tzinfo=UTC)  # before the first wave of 5 Jan
        campaign = services.create_campaign(
            tenant=tenant,
            fields={
                "name": "Daily digest",
                "kind": "scheduled",
                "content": {"language": "en", "variants": [{"title": "Good morning", "body": "Your digest"}]},
                "schedule_kind": "daily",
                "send_time": datetime(2027, 1, 1, 9).time(),
                "zone_mode": "local",
                "cooldown": "1h",
            },
        )
        Campaign.objects.filter(pk=campaign.pk).update(
            status="active", activated_at=activated, live_since=activated
        )
        campaign.refresh_from_db()

        plan_now = datetime(
            2027, 1, 4, 18, 30, tzinfo=UTC
        )  # Kiritimati's 09:00 on the 5th is 19:00 on the 4th
        t = time.perf_counter()
        scheduler.plan_campaign(campaign, now=plan_now)
        plan_seconds = time.perf_counter() - t
        occurrence = datetime(2027, 1, 5).date()
        CampaignRun.objects.filter(campaign=campaign).exclude(occurrence=occurrence).delete()
        waves = CampaignRun.objects.filter(campaign=campaign).count()
        print(f"\nPlanned the 5 Jan occurrence: {waves} waves in {plan_seconds * 1000:.0f} ms")

        print("\nWaves (claim + audience ∩ zones + dispatch, at each wave's instant):")
        t = time.perf_counter()
        rows = run_waves(campaign, occurrence, fan_out=args.fan_out, label="wave")
        total = time.perf_counter() - t
        sent = sum(r["users"] for r in rows)
        span = rows[-1]["due_at"] - rows[0]["due_at"]
        dispatch_seconds = sum(r["seconds"] for r in rows)
        big = max(rows, key=lambda r: r["users"])
        print(
            f"\n{len(rows)} waves over {span.total_seconds() / 3600:.1f} h of UTC: {sent:,} users reached "
            f"(of {args.users:,}); dispatch total {dispatch_seconds:.1f} s "
            f"({sent / dispatch_seconds:,.0f} users/s), wall {total:.1f} s; "
            f"largest wave {big['users']:,} users in {big['seconds']:.1f} s; "
            f"median wave {statistics.median(r['seconds'] for r in rows):.2f} s"
        )
        if args.fan_out:
            fanned = sum(r["fan_out"] for r in rows)
            print(f"fan-out of all waves' messages: {fanned:.1f} s ({sent / fanned:,.0f} deliveries/s)")

        # A second beat (or a re-run after a crash) of every wave: nobody is sent twice.
        CampaignRun.objects.filter(campaign=campaign, occurrence=occurrence).update(
            state="planned", claimed_until=None
        )
        print("\nEvery wave again (a second beat, or a re-run after a crash):")
        t = time.perf_counter()
        again = run_waves(campaign, occurrence, fan_out=False, label="again")
        print(
            f"  sent {sum(r['users'] for r in again):,} in {time.perf_counter() - t:.1f} s "
            f"(every user already in the ledger for the occurrence)"
        )
    finally:
        if not args.keep:
            drop_database(args.database_url)
            print("\n(bench database dropped)")


if __name__ == "__main__":
    main()
