#!/usr/bin/env python
"""Segments at scale on PostgreSQL: size the demo segments, and fan a segment message out.

    .venv/bin/python bench/segments.py --scale 1      # 1,000,000 users, 10,000,000 events
    .venv/bin/python bench/segments.py --scale 0.1    # a tenth: 100,000 users, 1,000,000 events

Generates users (with one device each, a fifth with a second one), and events with params
(`purchase` with `amount`, `cart_add`, `app_open`, `level_complete`) spread over 90 days,
server-side with INSERT … SELECT over generate_series. Then times `audiences.selectors.count`
for each demo segment (best of three, goal < 1 s), and the fan-out (devices turned into
deliveries per second, sending left out) of a message to a segment against one to everyone,
in the same run (goal: the segment's rate at least 80 % of everyone's).
"""

import argparse
import os
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
        cursor.execute("SELECT min(id), max(id) FROM devices_appuser WHERE tenant_id = %s", [t])
        low, high = cursor.fetchone()
        batch = 1_000_000
        for start in range(0, events, batch):
            cursor.execute(
                """
                INSERT INTO devices_event (tenant_id, user_id, name, occurred_at, received_at, session_id,
                                           params, fingerprint)
                SELECT %s, %s + floor(random() * (%s - %s + 1))::bigint, e.name,
                       now() - interval '90 days' * random(), now(), 's',
                       CASE e.name
                         WHEN 'purchase' THEN jsonb_build_object(
                             'amount', round((random() * 200)::numeric, 2), 'currency', 'EUR')
                         WHEN 'cart_add' THEN jsonb_build_object('sku', 'SKU-' || (i %% 900 + 100))
                         WHEN 'level_complete' THEN jsonb_build_object('level', i %% 40 + 1)
                         ELSE jsonb_build_object('source', 'launcher') END,
                       'bench-' || i
                FROM (SELECT i, (ARRAY['app_open','app_open','app_open','app_open','app_open',
                                       'cart_add','cart_add','level_complete','level_complete','purchase'])
                                [1 + (i::bigint * 7919) %% 10] AS name
                      FROM generate_series(%s, %s) AS i) AS e""",
                [t, low, high, low, start + 1, min(start + batch, events)],
            )
            print(f"  events {min(start + batch, events):,}", flush=True)
        cursor.execute("ANALYZE devices_appuser; ANALYZE devices_device; ANALYZE devices_event")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fan_out_rate(tenant, audience: str, params: dict) -> tuple[float, int]:
    from django.db import connection
    from django.utils import timezone

    from messaging.models import Message
    from messaging.services import fan_out

    message = Message.objects.create(
        tenant=tenant,
        title="bench",
        body="bench",
        audience=audience,
        audience_params=params,
        status=Message.Status.SENDING,
        started_at=timezone.now(),
    )
    seconds, _ = timed(lambda: fan_out(message_id=message.pk))
    message.refresh_from_db()
    count = message.targeted_count
    with connection.cursor() as cursor:  # leave no work behind for the next run
        cursor.execute("DELETE FROM messaging_delivery WHERE message_id = %s", [message.pk])
    return count / seconds if seconds else 0.0, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 1,000,000 users and 10,000,000 events")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench_segments")
    parser.add_argument("--keep", action="store_true", help="reuse the data of an earlier run at this scale")
    args = parser.parse_args()
    users, events = int(1_000_000 * args.scale), int(10_000_000 * args.scale)
    create_database(args.database_url)
    setup_django(args.database_url)

    from audiences import rules, selectors
    from audiences.models import Segment
    from fcm_sandbox.management.commands.demo import DEMO_SEGMENTS
    from tenants.models import Tenant

    tenant = Tenant.objects.filter(tenant_id="bench-segments").first()
    if tenant is None or not args.keep:
        Tenant.objects.filter(tenant_id="bench-segments").delete()
        tenant = Tenant.objects.create(name="Bench", tenant_id="bench-segments")
        print(f"Generating {users:,} users and {events:,} events …", flush=True)
        seconds, _ = timed(lambda: generate(tenant, users, events))
        print(f"  generated in {seconds:.0f} s")

    print(f"\nSegment sizes ({users:,} users, {events:,} events; best of 3):")
    for name, document in DEMO_SEGMENTS.items():
        parsed = rules.parse(document)
        best, size = min(timed(lambda p=parsed: selectors.count(tenant, p)) for _ in range(3))
        print(f"  {name:30} {best * 1000:7.0f} ms   {size['users']:>9,} users {size['devices']:>9,} devices")

    print("\nFan-out (deliveries created per second; sending not included):")
    Segment.objects.filter(tenant=tenant).delete()
    rates = {}
    everyone_rate, everyone = fan_out_rate(tenant, "all", {})
    rates["everyone"] = everyone_rate
    print(f"  everyone                       {everyone_rate:9,.0f}/s   {everyone:,} devices")
    for name in ("bought over 50 in 14 days", "Turkish speakers on Android"):
        rate, n = fan_out_rate(tenant, "rules", {"rules": rules.parse(DEMO_SEGMENTS[name])})
        print(f"  {name:30} {rate:9,.0f}/s   {n:,} devices   {rate / everyone_rate:.0%} of everyone's")


def create_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
