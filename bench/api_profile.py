#!/usr/bin/env python
"""Where one API request's time goes: POST /events and POST /devices/refresh-token, profiled.

    .venv/bin/python bench/api_profile.py                  # PostgreSQL + Redis, 2,000 requests each
    .venv/bin/python bench/api_profile.py --requests 5000 --database-url postgres://...
    .venv/bin/python bench/api_profile.py --ingest queue --scenarios events   # EVENTS_INGEST=queue

Drives Herald's WSGI application in this process, as a gunicorn worker would (the same
settings, middleware and views; no HTTP socket), with one client reporting for 20 devices
(`/events`) or rotating one device's token (`/devices/refresh-token`), and prints per request:

* the CPU time of this process and of its PostgreSQL backend (``/proc/<pid>/stat``), with
  no profiler attached, and Redis's CPU (``INFO cpu``: the whole server, so other users of
  it count too);
* the commands sent to PostgreSQL, counted at the driver (so BEGIN, COMMIT and the
  connection health check count too), each once with its count;
* a cProfile breakdown: the parts of a request (authentication, parsing, validation,
  throttles, the service and each of its statements) as a share of the whole. cProfile
  slows function-call-heavy code (the ORM) more than C code, so read shares, not times.
  It is timed in CPU time, so waiting for PostgreSQL and Redis does not count.

With ``--ingest queue`` (EVENTS_INGEST=queue) ``/events`` appends to the Redis stream in its rate
limits' round trip and answers without the database; no writer runs, and the stream and its
markers are emptied after each phase (XTRIM MAXLEN 0), outside the timed loops, so that the run
leaves nothing queued behind.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_load import cpu_seconds, ensure_database  # noqa: E402

# The parts of a request, as (label, [(file suffix, function name), ...]): the cumulative time
# of those functions, so a part includes what it calls; indented parts are inside the one above.
# Parts with no functions are derived in profile(). The top-level parts add up to the whole.
PARTS = [
    ("whole request (WSGI handler)", [("django/core/handlers/wsgi.py", "__call__")]),
    ("middleware, URL resolving, WSGI: outside the view", []),
    ("  failed-auth budget, in the middleware (Redis GET)", [("api/throttling.py", "process_view")]),
    ("DRF: Request wrapper, negotiation, Response render", []),
    ("plain path: request checks and rendering", []),
    ("JSON body parsing", [("api/errors.py", "parse"), ("api/errors.py", "parse_json")]),
    ("authentication: key (cached) + last-used touch", []),
    ("  key lookup", [("tenants/auth.py", "find_key"), ("tenants/auth.py", "remembered_key")]),
    ("  last-used touch", [("tenants/models.py", "touch")]),
    ("rate limits, DRF throttles (Redis, 1 call each)", [("rest_framework/views.py", "check_throttles")]),
    ("failed-auth budget + rate limits (1 Redis call)", [("api/throttling.py", "hit_unless")]),
    (
        "failed-auth budget + rate limits + stream append (1 Redis call)",
        [("api/throttling.py", "hit_unless_then_append")],
    ),
    ("  counters: names, client IP, rate settings", [("api/throttling.py", "counter")]),
    ("  failed-auth counter: name, client IP", [("api/throttling.py", "auth_failure_counter")]),
    (
        "validation",
        [
            ("rest_framework/serializers.py", "is_valid"),
            ("devices/validation.py", "event_input"),
            ("devices/validation.py", "refresh_input"),
        ],
    ),
    ("queue: the stream entry (ingest.prepare)", [("devices/ingest.py", "prepare")]),
    ("  event document", [("devices/services.py", "event_document")]),
    ("service: record_event", [("devices/services.py", "record_event")]),
    ("  event fingerprint", [("devices/services.py", "event_fingerprint")]),
    (
        "  the write: lock + one statement, one round trip",
        [("devices/services.py", "_record_event_postgresql")],
    ),
    ("service: refresh_token", [("devices/services.py", "refresh_token")]),
    (
        "  the swap: lock + one statement, one round trip",
        [("devices/services.py", "_refresh_token_postgresql")],
    ),
    ("  transaction commit", [("django/db/backends/base/base.py", "commit")]),
    ("response rendering (JSONRenderer)", [("rest_framework/renderers.py", "render")]),
    ("anywhere: cursor execute (driver, any statement)", [("psycopg/cursor.py", "execute")]),
    ("anywhere: Redis client calls", [("redis/client.py", "execute_command")]),
    ("anywhere: Redis script call (_evalsha)", [("api/throttling.py", "_evalsha")]),
    ("anywhere: json.dumps", [("json/__init__.py", "dumps")]),
    ("anywhere: event time parsing (RFC3339DateTimeField)", [("api/fields.py", "to_internal_value")]),
    (
        "anywhere: prometheus observe + inc",
        [("prometheus_client/metrics.py", "observe"), ("prometheus_client/metrics.py", "inc")],
    ),
    ("anywhere: HttpResponse construction", [("django/http/response.py", "__init__")]),
    ("anywhere: logging", [("logging/__init__.py", "_log")]),
]


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def event_body(run: str, tenant_id: str, key: str, n: int) -> dict:
    device = n % 20
    return {
        "tenant_id": tenant_id,
        "api_key": key,
        "app_user_id": f"{run}-user-{device}",
        "event_name": "screen_view",
        "event_time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "device_token": f"{run}-ev-{device}-" + "x" * 120,
        "platform": "android",
        "push_permission_granted": True,
        "timezone": "Europe/Istanbul",
        "language": "tr",
        "country": "TR",
        "session_id": f"s-{n // 50}",
        "params": {"screen": "home", "n": n},
    }


class Driver:
    """Calls the WSGI application as gunicorn does, and checks every answer is a 200."""

    def __init__(self, run: str, tenant_id: str, key: str):
        from config.wsgi import application

        self.application, self.run, self.tenant_id, self.key = application, run, tenant_id, key
        self.chain = 0

    def body(self, kind: str, n: int) -> tuple[str, bytes]:
        if kind == "events":
            return "/events", json.dumps(event_body(self.run, self.tenant_id, self.key, n)).encode()
        body = {
            "tenant_id": self.tenant_id,
            "api_key": self.key,
            "old_token": f"{self.run}-chain-{self.chain}",
            "new_token": f"{self.run}-chain-{self.chain + 1}",
            "app_user_id": f"{self.run}-chain-user",
        }
        self.chain += 1
        return "/devices/refresh-token", json.dumps(body).encode()

    def request(self, kind: str, n: int) -> None:
        path, raw = self.body(kind, n)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(raw)),
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(raw),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        status = []
        result = self.application(environ, lambda s, h, exc_info=None: status.append(s))
        body = b"".join(result)
        if hasattr(result, "close"):
            result.close()
        if not status[0].startswith("200"):
            raise SystemExit(f"{path} answered {status[0]}: {body[:300]!r}")


def round_trips(driver: Driver, kind: str, start: int, count: int) -> Counter:
    """Every command sent to PostgreSQL, counted at the driver: the statements Django runs,
    and those it does not show (BEGIN, COMMIT, the connection health check's SELECT 1)."""
    import psycopg
    from psycopg._connection_base import BaseConnection

    seen = Counter()
    execute, command = psycopg.Cursor.execute, BaseConnection._exec_command

    def counted_execute(self, query, *args, **kwargs):
        text = query if isinstance(query, str) else getattr(query, "as_string", lambda _: str(query))(None)
        seen[" ".join(str(text).split())[:150]] += 1
        return execute(self, query, *args, **kwargs)

    def counted_command(self, sql, *args, **kwargs):
        seen[sql.decode() if isinstance(sql, bytes) else str(sql)] += 1
        return command(self, sql, *args, **kwargs)

    psycopg.Cursor.execute, BaseConnection._exec_command = counted_execute, counted_command
    try:
        for n in range(start, start + count):
            driver.request(kind, n)
    finally:
        psycopg.Cursor.execute, BaseConnection._exec_command = execute, command
    return seen


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def empty_queue(redis_client) -> None:
    """Queue mode: drop what /events appended (no writer runs here); the stream and its consumer
    group stay."""
    if redis_client is None:
        return
    from devices.ingest import PENDING, STREAM

    redis_client.xtrim(STREAM, maxlen=0)
    redis_client.delete(PENDING)


def measure(driver: Driver, kind: str, requests: int, redis_client) -> dict:
    from django.db import connection

    for n in range(200):  # warm: connection, key cache, plan caches
        driver.request(kind, n)
    empty_queue(redis_client)
    pid = backend_pid() if connection.vendor == "postgresql" else None
    started = (
        time.process_time(),
        cpu_seconds(pid) if pid else 0.0,
        redis_cpu(redis_client) if redis_client else 0.0,
        time.perf_counter(),
    )
    for n in range(200, 200 + requests):
        driver.request(kind, n)
    ended = (
        time.process_time(),
        cpu_seconds(pid) if pid else 0.0,
        redis_cpu(redis_client) if redis_client else 0.0,
        time.perf_counter(),
    )
    if pid and backend_pid() != pid:
        print("  (the database connection was replaced during the run: its CPU is not counted)")
    empty_queue(redis_client)
    per = [(e - s) * 1000 / requests for s, e in zip(started, ended, strict=True)]
    return {"python_ms": per[0], "postgres_ms": per[1], "redis_ms": per[2], "wall_ms": per[3]}


def profile(driver: Driver, kind: str, requests: int, top: int = 0) -> None:
    profiler = cProfile.Profile(time.process_time)  # CPU, not waits on the database
    profiler.enable()
    for n in range(10_000, 10_000 + requests):
        driver.request(kind, n)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    if top:
        print(f"  the {top} functions with the most time of their own (cProfile, per request):")
        rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
        for (file, line, func), (_, calls, own, cumulative_time, _) in rows:
            where = "/".join(file.split("/")[-2:])
            print(
                f"    {1000 * own / requests:6.3f} ms own {1000 * cumulative_time / requests:6.3f} ms cum "
                f"{calls / requests:5.1f} calls  {where}:{line} {func}"
            )

    def cumulative(*functions) -> float:
        return sum(
            v[3]
            for (file, _, func), v in stats.items()
            if any(file.endswith(suffix) and func == name for suffix, name in functions)
        )

    by_part = {label: cumulative(*functions) for label, functions in PARTS}
    whole = by_part[PARTS[0][0]] or 1e-9
    drf = cumulative(("rest_framework/views.py", "dispatch"))
    # The plain path: answered in PlainPathMiddleware (plain_response), or, before it, by the
    # endpoint's view (which called DRF's when needed).
    plain = cumulative(("tenants/auth.py", "plain_response")) or cumulative(("tenants/auth.py", "view"))
    by_part["middleware, URL resolving, WSGI: outside the view"] = whole - (plain or drf)
    by_part["authentication: key (cached) + last-used touch"] = (
        by_part["  key lookup"] + by_part["  last-used touch"]
    )
    top = [label for label, _ in PARTS[5:] if not label.startswith((" ", "anywhere"))]
    inside = sum(by_part[label] for label in top)
    if plain:
        by_part["plain path: request checks and rendering"] = plain - inside
    else:
        by_part["DRF: Request wrapper, negotiation, Response render"] = drf - inside
    print(f"  cProfile breakdown over {requests} requests (share of the whole request):")
    for label, _ in PARTS:
        value = by_part[label]
        if value:
            print(f"    {label:<52} {100 * value / whole:5.1f} %   {1000 * value / requests:6.3f} ms")


def seed(run: str):
    from devices.models import AppUser, Device, hash_token
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.create(name=f"Profile {run}", tenant_id=run)
    _, key = ApiKey.generate(tenant=tenant, name="profile", kind=ApiKey.Kind.APP)
    user = AppUser.objects.create(tenant=tenant, app_user_id=f"{run}-chain-user")
    token = f"{run}-chain-0"
    Device.objects.create(
        tenant=tenant,
        user=user,
        token=token,
        token_hash=hash_token(token),
        platform="android",
        push_permission=True,
    )
    return tenant, key


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--scenarios", default="events,refresh")
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with most own time")
    parser.add_argument(
        "--ingest",
        choices=("direct", "queue"),
        default="direct",
        help="EVENTS_INGEST: queue appends /events to the Redis stream (needs --redis-url)",
    )
    parser.add_argument(
        "--without-rate-limits",
        action="store_true",
        help="turn rate limiting off, to see what its checks cost",
    )
    args = parser.parse_args()
    no_limit = "" if args.without_rate_limits else "1000000000/min"  # on but never reached, or off
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.load_settings",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "RATE_LIMIT_PER_IP": no_limit,
            "RATE_LIMIT_PER_KEY": no_limit,
            "LOG_LEVEL": "WARNING",
            # One connection for the whole run, so that its backend's CPU can be read.
            "CONN_MAX_AGE": "3600",
            "EVENTS_INGEST": args.ingest,
        }
    )
    if args.ingest == "queue" and not args.redis_url:
        raise SystemExit("--ingest queue needs Redis: pass --redis-url")
    if args.database_url.startswith(("postgres://", "postgresql://")):
        ensure_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis_client = redis.Redis.from_url(args.redis_url) if args.redis_url else None
    run = f"profile-{os.getpid()}"
    tenant, key = seed(run)
    driver = Driver(run, tenant.tenant_id, key)
    load = os.getloadavg()[0]
    print(
        f"Herald API profile, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"load average {load:.2f}, {args.requests} requests per scenario, /events ingest {args.ingest}"
    )
    try:
        for kind in args.scenarios.split(","):
            path = {"events": "POST /events", "refresh": "POST /devices/refresh-token"}[kind]
            print(f"\n{path}")
            cpu = measure(driver, kind, args.requests, redis_client)
            print(
                f"  per request, no profiler: wall {cpu['wall_ms']:.3f} ms; "
                f"CPU: Python {cpu['python_ms']:.3f} ms, PostgreSQL backend {cpu['postgres_ms']:.3f} ms, "
                f"Redis (whole server) {cpu['redis_ms']:.3f} ms"
            )
            seen = round_trips(driver, kind, 5_000, 100)
            empty_queue(redis_client)
            print(f"  PostgreSQL round trips per request: {sum(seen.values()) / 100:.2f}")
            for sql, count in seen.most_common():
                print(f"    {count / 100:5.2f}  {sql}")
            profile(driver, kind, min(args.requests, 1000), top=args.top)
            empty_queue(redis_client)
    finally:
        from tenants.models import Tenant

        Tenant.objects.filter(tenant_id=run).delete()


if __name__ == "__main__":
    main()
