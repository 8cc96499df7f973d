#!/usr/bin/env python
"""API load benchmark: Herald under gunicorn on PostgreSQL, many concurrent clients.

    .venv/bin/python bench/api_load.py                      # 64 clients, 20 s per scenario
    .venv/bin/python bench/api_load.py --clients 128 --duration 30 --workers 4 --threads 4
    .venv/bin/python bench/api_load.py --database-url postgres://postgres@127.0.0.1:5432/herald_bench \\
        --redis-url redis://127.0.0.1:6379/15

Starts gunicorn (config.wsgi with ``bench.load_settings``: Herald's settings plus one bare
view, ``POST /bench/floor``) on a free port of 127.0.0.1, migrates and seeds a tenant with
an app key, then for each scenario drives keep-alive HTTP/1.1 connections as fast as they
are answered, for a bounded time after a short warm-up:

* ``floor``: the bare Django view, same stack (gunicorn, middleware, JSON body): the floor;
* ``events``: ``POST /events``, each client reporting for 20 devices of its own;
* ``refresh``: ``POST /devices/refresh-token``, each client rotating one device's token.

Prints requests/second, p50/p99/max latency and errors per scenario, and checks that every
accepted event and rotation was stored. Rate limits stay on, set far above the load, so
that their cost (on the app endpoints, one Redis script per request counting both limits and
reading the failed-authentication budget) is measured; with ``--redis-url``
(the default, if Redis answers) the counters are in Redis, as in production.

With ``--ingest queue`` the server runs with ``EVENTS_INGEST=queue`` (``/events`` appends to
a Redis stream and answers) and the benchmark runs ``--writers`` processes of ``manage.py
herald_ingest`` beside it, whose CPU (and their PostgreSQL backends') counts in the CPU per
request; each queued scenario reports the stream's backlog (its maximum, and what was left
when the measured window closed), how long it took to drain after the load stopped, and the
visibility lag: from the answer of every ``--lag-every``-th request to its event's row being
visible in the database. ``--ingest both`` runs ``/events`` in both modes in the same pass,
interleaved with the floor. ``--writer-drain N`` measures the writers alone: N events queued
with no writer running, then the time and CPU the writers take to store them.

Everything stays on this machine: the server binds 127.0.0.1 and the clients connect
nowhere else. The load generator (one asyncio process per ``--client-processes``) shares
the machine's CPUs with gunicorn and PostgreSQL; it costs a few percent of a core.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEVICES_PER_EVENTS_CLIENT = 20
SCENARIOS = {
    "floor": ("POST /bench/floor", "bare Django view (floor)"),
    "events": ("POST /events", "POST /events"),
    "events-queue": ("POST /events (queued)", "POST /events (queue)"),
    "refresh": ("POST /devices/refresh-token", "POST /devices/refresh-token"),
    "refresh-queue": ("POST /devices/refresh-token (queue-mode server)", "refresh-token (queue mode)"),
}
PATHS = {
    "floor": "/bench/floor",
    "events": "/events",
    "refresh": "/devices/refresh-token",
}
# Backends of the benchmark's own sampling connections: not the server's work, not counted.
OWN_APPLICATION_NAME = "api_load-sampler"
LOOPBACK = "127.0.0.1"


# --- The server -----------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database if it does not exist."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def redis_answers(url: str) -> bool:
    if not url:
        return False
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def forget_redis_if_silent(args) -> None:
    """Without an answering Redis, rate-limit counters stay in each process's memory."""
    if args.redis_url and not redis_answers(args.redis_url):
        print(f"Redis at {args.redis_url} does not answer: rate-limit counters in per-process memory")
        args.redis_url = ""


def server_env(args, *, ingest: str = "direct") -> dict:
    no_limit = "1000000000/min"  # on, so that their cost is measured, but never reached
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
        "DATABASE_URL": args.database_url,
        "DEBUG": "false",
        "ALLOWED_HOSTS": LOOPBACK,
        "RATE_LIMIT_PER_IP": no_limit,
        "RATE_LIMIT_PER_KEY": no_limit,
        # /events and the refresh count against this one (per tenant and IP, 12,000/min by
        # default), which a run past ~200 req/s would otherwise reach within its minute.
        "RATE_LIMIT_APP_PER_IP": no_limit,
        "LOG_LEVEL": "WARNING",
        "TASK_BACKEND": "database",
        # The API serves no static files; an empty directory keeps WhiteNoise from warning.
        "STATIC_ROOT": tempfile.mkdtemp(prefix="herald-bench-static-"),
    }
    env.pop("REDIS_URL", None)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    env.pop("EVENTS_INGEST", None)
    if ingest != "direct":
        env["EVENTS_INGEST"] = ingest
    return env


def setup_django(env: dict) -> None:
    os.environ.update(
        {
            k: v
            for k, v in env.items()
            if k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "TASK_BACKEND", "LOG_LEVEL")
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(run: str, clients: int) -> tuple[str, str]:
    """A tenant with an app key, and one device per refresh client. Returns (tenant_id, key)."""
    from devices.models import AppUser, Device, hash_token
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.create(name=f"Load {run}", tenant_id=run)
    _, key = ApiKey.generate(tenant=tenant, name="load", kind=ApiKey.Kind.APP)
    users = AppUser.objects.bulk_create(
        [AppUser(tenant=tenant, app_user_id=f"{run}-chain-user-{c}") for c in range(clients)]
    )
    tokens = [f"{run}-chain-{c}-0" for c in range(clients)]
    Device.objects.bulk_create(
        [
            Device(
                tenant=tenant,
                user=user,
                token=token,
                token_hash=hash_token(token),
                platform="android",
                push_permission=True,
            )
            for token, user in zip(tokens, users, strict=True)
        ]
    )
    return tenant.tenant_id, key


def stored(run: str) -> dict:
    from devices.models import Event, TokenRotation

    return {
        "events": Event.objects.filter(tenant__tenant_id=run).count(),
        "rotations": TokenRotation.objects.filter(device__tenant__tenant_id=run).count(),
    }


def cleanup(run: str) -> None:
    from tenants.models import Tenant

    Tenant.objects.filter(tenant_id=run).delete()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_gunicorn(args, env: dict, port: int) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "config.wsgi",
        "--bind",
        f"{LOOPBACK}:{port}",
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--worker-class",
        "gthread",
        "--keep-alive",
        "10",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
        *(["--config", str(Path(args.gunicorn_config).resolve())] if args.gunicorn_config else []),
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise SystemExit("gunicorn exited; see above")
    server.terminate()
    raise SystemExit("gunicorn did not answer /healthz within 30 s")


def start_writers(args, env: dict, count: int) -> list[subprocess.Popen]:
    """`count` queue writers (``manage.py herald_ingest``) with the server's settings."""
    command = [sys.executable, *args.writer_command.split(), *args.writer_args.split()]
    return [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(count)]


def wait_writers_ready(args, writers: list[subprocess.Popen], timeout: float = 60) -> None:
    """Until the stream's consumer group exists and every writer is idle (its CPU time still
    over half a second: started up, connected, waiting for entries): a writer still starting
    up (Django, its connections: seconds on a loaded machine) is not to be measured."""
    import redis

    client = redis.Redis.from_url(args.redis_url)
    stream, _ = queue_streams()
    deadline = time.monotonic() + timeout
    before = {}
    while time.monotonic() < deadline:
        if any(writer.poll() is not None for writer in writers):
            raise SystemExit("a herald_ingest writer exited; see above")
        try:
            group = bool(client.xinfo_groups(stream))
        except redis.ResponseError:  # no stream yet
            group = False
        now = {writer.pid: cpu_seconds(writer.pid) for writer in writers}
        if group and now == before:
            return
        before = now
        time.sleep(0.5)
    print(f"warning: the writers were not idle {timeout:g} s after starting", flush=True)


def stop_writers(writers: list[subprocess.Popen]) -> None:
    """SIGTERM, then wait: a writer finishes the batch it holds and exits."""
    for writer in writers:
        if writer.poll() is None:
            writer.terminate()
    for writer in writers:
        try:
            writer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"writer {writer.pid} still running 30 s after SIGTERM: killed")
            writer.kill()
            writer.wait()


# --- The queue: its backlog in Redis, the events it has stored ---------------------------------


def queue_streams() -> tuple[str, str]:
    """The queue's stream and its dead-letter stream, as the served tree names them."""
    try:
        from devices import ingest
    except ImportError:  # a tree without queued ingestion: the names of branch ingest
        return "herald:ingest:events", "herald:ingest:dead"
    return ingest.STREAM, getattr(ingest, "DEAD_LETTERS", "")


def queue_backlog(redis_client) -> int:
    """Events queued and not yet stored: per consumer group of the queue's stream, the entries
    not yet delivered to it (its lag) plus those delivered and not yet acknowledged; without a
    group (no writer has started yet), or when Redis cannot tell the lag, the stream's length
    (the writer deletes what it has stored and acknowledged)."""
    stream, _ = queue_streams()
    try:
        groups = redis_client.xinfo_groups(stream)
    except Exception:  # no such stream yet
        return 0
    if not groups or any(group.get("lag") is None for group in groups):
        return redis_client.xlen(stream)
    return sum(group["lag"] + group["pending"] for group in groups)


def dead_letters(redis_client) -> int:
    _, stream = queue_streams()
    return redis_client.xlen(stream) if stream else 0


class QueueWatch:
    """Samples the queue's backlog (`interval` s) and polls the database for the events of
    sampled requests (fingerprints fed by the clients), in a thread, while a scenario runs."""

    def __init__(self, args, tenant_pk: int, *, poll: float = 0.02, interval: float = 0.1) -> None:
        import threading

        import psycopg
        import redis

        self.redis = redis.Redis.from_url(args.redis_url)
        self.db = psycopg.connect(args.database_url, autocommit=True, application_name=OWN_APPLICATION_NAME)
        self.tenant_pk, self.poll, self.interval = tenant_pk, poll, interval
        self.pending: dict[str, float] = {}  # fingerprint -> time.time() of the answer
        self.seen: list[tuple[float, float]] = []  # (answered at, lag s)
        self.backlog: list[tuple[float, int]] = []  # (time, backlog)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, fingerprint: str, answered_at: float) -> None:
        with self.lock:
            self.pending[fingerprint] = answered_at

    def backlog_now(self) -> int:
        return queue_backlog(self.redis)

    def _run(self) -> None:
        next_backlog = 0.0
        while not self.stopping.is_set():
            now = time.time()
            if now >= next_backlog:
                self.backlog.append((now, self.backlog_now()))
                next_backlog = now + self.interval
            with self.lock:
                wanted = list(self.pending)
            if wanted:
                found = self.db.execute(
                    "SELECT fingerprint FROM devices_event WHERE tenant_id = %s AND fingerprint = ANY(%s)",
                    [self.tenant_pk, wanted],
                ).fetchall()
                now = time.time()
                with self.lock:
                    for (fingerprint,) in found:
                        answered_at = self.pending.pop(fingerprint, None)
                        if answered_at is not None:
                            self.seen.append((answered_at, max(0.0, now - answered_at)))
            self.stopping.wait(self.poll)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.db.close()
        self.redis.close()


def stored_events(tenant_pk: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM devices_event WHERE tenant_id = %s", [tenant_pk])
        return cursor.fetchone()[0]


# --- CPU accounting: gunicorn's workers, the database's backends, Redis ------------------------


def cpu_seconds(pid: int) -> float:
    """CPU (user + system) process `pid` has used, from /proc; 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_sample(server: subprocess.Popen, redis_url: str, writers: list | None = None) -> dict:
    """CPU so far of each gunicorn process, of each PostgreSQL backend serving the benchmark's
    database (bar this process's own: its connection and its samplers'), of each queue
    writer, and of the Redis server (the whole server: other users of it count too). The
    writers' backends are the database's, so they count in PostgreSQL's column."""
    from django.db import connection

    workers = {server.pid: cpu_seconds(server.pid)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server.pid:
                workers[int(stat.parent.name)] = cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name <> %s",
            [OWN_APPLICATION_NAME],
        )
        backends = {pid: cpu_seconds(pid) for (pid,) in cursor.fetchall()}
    redis_cpu = 0.0
    if redis_url:
        import redis

        info = redis.Redis.from_url(redis_url).info("cpu")
        redis_cpu = info["used_cpu_user"] + info["used_cpu_sys"]
    sample = {"gunicorn": workers, "postgres": backends, "redis": redis_cpu}
    if writers is not None:
        sample["writer"] = {w.pid: cpu_seconds(w.pid) for w in writers}
    return sample


def cpu_used(before: dict, after: dict) -> dict:
    """Seconds of CPU each side used between two samples (processes that started in between
    count whole; those that exited in between are lost, which CONN_MAX_AGE makes rare)."""
    return {
        side: sum(cpu - before[side].get(pid, 0.0) for pid, cpu in after[side].items())
        for side in ("gunicorn", "postgres", "writer")
        if side in after
    } | {"redis": after["redis"] - before["redis"]}


# --- The clients (a separate process: `--client SPEC`) ----------------------------------------


def event_body(spec: dict, client: int, n: int) -> dict:
    device = n % DEVICES_PER_EVENTS_CLIENT
    return {
        "tenant_id": spec["tenant_id"],
        "api_key": spec["api_key"],
        "app_user_id": f"{spec['run']}-ev-user-{client}-{device}",
        "event_name": "screen_view",
        # A new time every request: a new event, not a retry that the fingerprint dedupes.
        "event_time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "device_token": f"{spec['run']}-ev-{client}-{device}-" + "x" * 120,
        "platform": "android",
        "push_permission_granted": True,
        "timezone": "Europe/Istanbul",
        "language": "tr",
        "country": "TR",
        "session_id": f"s-{client}-{n // 50}",
        "params": {"screen": "home", "n": n},
    }


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


async def run_client(spec: dict, client: int, port: int, results: dict) -> None:
    # "events-queue" and "refresh-queue" send what "events" and "refresh" do, to the queue-mode server.
    kind = spec["kind"].removesuffix("-queue")
    path = PATHS[kind]
    # Queued events: every lag_every-th accepted request's fingerprint and answer time go to
    # the orchestrator at once (a line on stdout), which polls the database for its row.
    lag_every = spec.get("lag_every", 0)
    measure_from, stop_at = spec["measure_from"], spec["stop_at"]
    reader = writer = None
    # A refresh client goes on from the token its device holds after the previous runs.
    n, chain = 0, spec.get("chains", {}).get(str(client), 0)
    # With --rate, each client sends on a schedule, and a request's latency counts from its
    # scheduled time: a slow answer delays the next ones, and that wait counts too.
    interval = spec["interval"]
    scheduled = time.perf_counter() + interval * (client % 97) / 97
    while time.time() < stop_at:
        if interval:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if kind == "refresh":
            body = {
                "tenant_id": spec["tenant_id"],
                "api_key": spec["api_key"],
                "old_token": f"{spec['run']}-chain-{client}-{chain}",
                "new_token": f"{spec['run']}-chain-{client}-{chain + 1}",
                "app_user_id": f"{spec['run']}-chain-user-{client}",
            }
        else:
            body = event_body(spec, client, n)
        raw = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        ).encode() + raw
        n += 1
        started = scheduled if interval else time.perf_counter()
        scheduled += interval
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(request)
            status, answer, keep_alive = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            results["errors"][type(exc).__name__] = results["errors"].get(type(exc).__name__, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        elapsed = time.perf_counter() - started
        if status == 200:
            results["accepted"] += 1
            chain += kind == "refresh"
            if lag_every and results["accepted"] % lag_every == client % lag_every:
                try:
                    fingerprint = json.loads(answer)["fingerprint"]
                except (ValueError, KeyError, TypeError):
                    fingerprint = None
                if fingerprint:
                    print(f"LAG {fingerprint} {time.time():.6f}", flush=True)
        if time.time() >= measure_from:
            results["latencies_us"].append(int(elapsed * 1e6))
            if status != 200:
                results["errors"][str(status)] = results["errors"].get(str(status), 0) + 1
        if not keep_alive:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()
    results["chains"][str(client)] = chain


async def run_clients(spec: dict) -> dict:
    results = {"latencies_us": [], "errors": {}, "accepted": 0, "chains": {}}
    await asyncio.gather(
        *(
            run_client(spec, client, spec["port"], results)
            for client in range(spec["first_client"], spec["first_client"] + spec["clients"])
        )
    )
    return results


def client_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    print(json.dumps(asyncio.run(run_clients(spec))))


# --- The orchestrator -------------------------------------------------------------------------


def run_scenario(
    kind: str,
    args,
    port: int,
    run: str,
    tenant_id: str,
    api_key: str,
    server: subprocess.Popen | None = None,
    *,
    rate: float | None = None,
    chains: dict | None = None,
    writers: list[subprocess.Popen] | None = None,
    tenant_pk: int | None = None,
) -> dict:
    """One scenario for args.duration seconds after args.warmup: as fast as answered, or at
    `rate` requests/s (default args.rate; 0 for as fast as answered). `chains` (client → the
    step its device's token is at) is read and brought up to date for refresh clients.

    For ``events-queue`` (`writers` running, `tenant_pk` the seeded tenant's key), also the
    queue's backlog while it runs, the drain after the load stops (up to args.drain_timeout),
    the visibility lag of sampled requests, and whether every accepted event was stored."""
    rate = args.rate if rate is None else rate
    chains = {} if chains is None else chains
    queued = kind == "events-queue"
    watch = QueueWatch(args, tenant_pk) if queued else None
    stored_before = stored_events(tenant_pk) if queued else 0
    load = os.getloadavg()[0]
    now = time.time()
    measure_from = now + 1 + args.warmup
    stop_at = measure_from + args.duration
    per_process = -(-args.clients // args.client_processes)
    processes = []
    for p in range(args.client_processes):
        count = min(per_process, args.clients - p * per_process)
        spec = {
            "kind": kind,
            "port": port,
            "run": run,
            "tenant_id": tenant_id,
            "api_key": api_key,
            "first_client": p * per_process,
            "clients": count,
            "measure_from": measure_from,
            "stop_at": stop_at,
            "interval": args.clients / rate if rate else 0.0,
            "chains": chains,
            "lag_every": args.lag_every if queued else 0,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--client", json.dumps(spec)], stdout=subprocess.PIPE, text=True
            )
        )
    readers = [_ClientReader(process, watch) for process in processes]
    time.sleep(max(0.0, measure_from - time.time()))
    stored_at_start = stored_events(tenant_pk) if queued else 0
    cpu_before = (
        cpu_sample(server, args.redis_url, writers if queued else None) if server is not None else None
    )
    time.sleep(max(0.0, stop_at - time.time()))
    if cpu_before is not None:
        cpu = cpu_used(cpu_before, cpu_sample(server, args.redis_url, writers if queued else None))
    else:
        cpu = {"gunicorn": 0.0, "postgres": 0.0, "redis": 0.0}
    if queued:
        backlog_end = watch.backlog_now()
        stored_at_end = stored_events(tenant_pk)
    merged = {"latencies_us": [], "errors": {}, "accepted": 0}
    for reader in readers:
        result = reader.result(timeout=args.warmup + args.duration + 60)
        merged["latencies_us"] += result["latencies_us"]
        merged["accepted"] += result["accepted"]
        chains.update(result["chains"])
        for name, count in result["errors"].items():
            merged["errors"][name] = merged["errors"].get(name, 0) + count
    latencies = sorted(merged["latencies_us"])

    def percentile(values: list, q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    row = {
        "scenario": kind,
        "rate": rate,
        "load": load,
        "requests": len(latencies),
        "rps": len(latencies) / args.duration,
        "p50_ms": percentile(latencies, 0.50) / 1000,
        "p99_ms": percentile(latencies, 0.99) / 1000,
        "max_ms": percentile(latencies, 1.0) / 1000,
        "errors": sum(merged["errors"].values()),
        "error_kinds": merged["errors"],
        "accepted_total": merged["accepted"],
        **{f"cpu_{side}_ms": 1000 * seconds / max(1, len(latencies)) for side, seconds in cpu.items()},
    }
    if queued:
        # The drain: until nothing is queued (every accepted request's event has been read,
        # stored and acknowledged), then until every sampled fingerprint has been seen.
        drain_deadline = stop_at + args.drain_timeout
        while (backlog := watch.backlog_now()) and time.time() < drain_deadline:
            time.sleep(0.05)
        drained_s = time.time() - stop_at if not backlog else None
        grace_deadline = min(drain_deadline, time.time() + 5)
        while watch.pending and time.time() < grace_deadline:
            time.sleep(0.05)
        dead = dead_letters(watch.redis)
        watch.close()
        stored_after = stored_events(tenant_pk)
        in_window = sorted(lag for at, lag in watch.seen if measure_from <= at < stop_at)
        backlog_window = [n for at, n in watch.backlog if measure_from <= at <= stop_at]
        row |= {
            "backlog_max": max(backlog_window, default=0),
            "backlog_end": backlog_end,
            "backlog_left": backlog,
            "drain_s": drained_s,
            "written_in_window": stored_at_end - stored_at_start,
            "cpu_writer_per_written_ms": 1000 * cpu["writer"] / max(1, stored_at_end - stored_at_start),
            "lag_samples": len(in_window),
            "lag_unseen": len(watch.pending),
            "lag_p50_ms": 1000 * percentile(in_window, 0.50),
            "lag_p99_ms": 1000 * percentile(in_window, 0.99),
            "lag_max_ms": 1000 * percentile(in_window, 1.0),
            "stored": stored_after - stored_before,
            "dead_letters": dead,
        }
    return row


class _ClientReader:
    """Reads a client process's output in a thread: lag samples go to `watch` as they come,
    the last line is the client's result."""

    def __init__(self, process: subprocess.Popen, watch: QueueWatch | None) -> None:
        import threading

        self.process, self.watch, self.last = process, watch, ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for line in self.process.stdout:
            if line.startswith("LAG "):
                _, fingerprint, answered_at = line.split()
                if self.watch is not None:
                    self.watch.add(fingerprint, float(answered_at))
            elif line.strip():
                self.last = line

    def result(self, timeout: float) -> dict:
        self.process.wait(timeout=timeout)
        self.thread.join(timeout=timeout)
        return json.loads(self.last)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/herald_bench")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="cache for the rate-limit counters ('' for per-process memory)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each")
    parser.add_argument("--clients", type=int, default=64, help="concurrent keep-alive connections")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--scenarios", default="floor,events,refresh")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of every scenario, interleaved (the order alternates each round); medians",
    )
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        help="then run each scenario again at this share (e.g. 0.8) of its median saturating "
        "req/s, for p50/p99 at that load",
    )
    parser.add_argument(
        "--goals",
        action="store_true",
        help="issue 16's goals in one run: --rounds 3 --paced 0.8 (unless given), then a summary",
    )
    parser.add_argument("--keep", action="store_true", help="keep the seeded tenant and its rows")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests/s per scenario, spread over the clients (0: as fast as answered)",
    )
    parser.add_argument(
        "--tree",
        help="serve another Herald checkout (its migrations and code; run this script with that "
        "tree's .venv/bin/python so that its gunicorn serves): before/after in one pass",
    )
    parser.add_argument(
        "--ingest",
        choices=("direct", "queue", "both"),
        default="direct",
        help="how /events writes: direct (in the request), queue (EVENTS_INGEST=queue, with "
        "--writers herald_ingest processes), or both, interleaved in one pass",
    )
    parser.add_argument("--writers", type=int, default=1, help="herald_ingest processes in queue mode")
    parser.add_argument(
        "--writer-args", default="", help="arguments for herald_ingest, e.g. '--batch 500 --block-ms 50'"
    )
    parser.add_argument(
        "--writer-command",
        default="manage.py herald_ingest",
        help="what the writers run (with this interpreter, in the served tree): for experiments",
    )
    parser.add_argument(
        "--lag-every",
        type=int,
        default=25,
        help="queue mode: poll the database for the event of every Nth accepted request",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="queue mode: seconds to wait after each scenario for the queue to drain",
    )
    parser.add_argument(
        "--writer-drain",
        type=int,
        default=0,
        metavar="N",
        help="measure the writers alone instead: queue N events with no writer running, then "
        "time --writers writers storing them (events/s, CPU ms per event)",
    )
    parser.add_argument(
        "--gunicorn-config",
        help="a gunicorn config file for the servers (hooks, e.g. bench/gunicorn_gc.py); "
        "without it gunicorn reads the served tree's gunicorn.conf.py if there is one",
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tree:
        global ROOT
        ROOT = Path(args.tree).resolve()
    if args.client:
        return client_main(args.client)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("api_load measures Herald on PostgreSQL: pass a postgres:// --database-url")
    if args.goals:
        args.rounds = max(args.rounds, 3)
        args.paced = args.paced or 0.8
    if args.paced and args.rate:
        raise SystemExit("--paced measures the saturating rate first: leave out --rate")
    forget_redis_if_silent(args)
    if (args.ingest != "direct" or args.writer_drain) and not args.redis_url:
        raise SystemExit("--ingest queue needs Redis (the queue is a Redis stream): pass --redis-url")

    load_before = os.getloadavg()[0]  # others' work on this machine skews the figures
    ensure_database(args.database_url)
    env = server_env(args)
    setup_django(env)
    run = f"load-{os.getpid()}"
    tenant_id, api_key = seed(run, args.clients)
    from tenants.models import Tenant

    tenant_pk = Tenant.objects.get(tenant_id=run).pk
    if args.writer_drain:
        return writer_drain(args, run, tenant_id, api_key, tenant_pk)
    # Which server: "events" and "refresh" on the direct one, "events-queue" and "refresh-queue"
    # (the refresh stays synchronous, but checks the queue for its tokens' events first) on the
    # queue-mode one; with both, each of the two on each. The floor is served by either.
    kinds = []
    for kind in args.scenarios.split(","):
        if kind in ("events", "refresh"):
            kinds += {"direct": [kind], "queue": [f"{kind}-queue"], "both": [kind, f"{kind}-queue"]}[
                args.ingest
            ]
        else:
            kinds.append(kind)
    servers, writers = {}, []
    try:
        if args.ingest != "queue":
            port = free_port()
            servers["direct"] = (start_gunicorn(args, env, port), port)
        if args.ingest != "direct":
            queue_env = server_env(args, ingest="queue")
            port = free_port()
            servers["queue"] = (start_gunicorn(args, queue_env, port), port)
            writers = start_writers(args, queue_env, args.writers)
            wait_writers_ready(args, writers)
        rows, paced, chains = [], [], {}

        def scenario(kind: str, **options) -> dict:
            mode = "queue" if kind.endswith("-queue") else "direct"
            server, port = servers[mode] if mode in servers else next(iter(servers.values()))
            if any(writer.poll() is not None for writer in writers):
                raise SystemExit("a herald_ingest writer exited; see above")
            return run_scenario(
                kind,
                args,
                port,
                run,
                tenant_id,
                api_key,
                server,
                chains=chains,
                writers=writers,
                tenant_pk=tenant_pk,
                **options,
            )

        for r in range(args.rounds):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                print(
                    f"round {r + 1}/{args.rounds}, {SCENARIOS[kind][0]}: {args.clients} clients, "
                    f"{args.warmup:g} s warm-up, {args.duration:g} s measured ...",
                    flush=True,
                )
                rows.append({"round": r + 1} | scenario(kind))
        if args.paced:
            for kind in kinds:
                rate = args.paced * median(row["rps"] for row in rows if row["scenario"] == kind)
                print(f"paced, {SCENARIOS[kind][0]}: {rate:.0f} req/s ...", flush=True)
                paced.append(scenario(kind, rate=rate))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
        stop_writers(writers)
    counts = stored(run)
    if not args.keep:
        cleanup(run)

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(
        f"\nHerald API load, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, PostgreSQL {pg_version}, gunicorn gthread "
        f"{args.workers}x{args.threads}, rate-limit counters in {'Redis' if args.redis_url else 'memory'}, "
        f"{args.clients} clients, {args.duration:g} s each, load average before {load_before:.2f}, "
        f"after {os.getloadavg()[0]:.2f}"
        + (
            f", /events ingest {args.ingest}: {args.writers} herald_ingest writer(s)"
            + (f" ({args.writer_args})" if args.writer_args else "")
            if args.ingest != "direct"
            else ""
        )
        + "\n"
    )
    print_rows(rows + paced, rounds=args.rounds > 1)
    print("* Redis: the whole server's CPU, so others' use of it on this machine counts too")
    if args.ingest != "direct":
        print_queue(rows + paced, args)
    if args.rounds > 1 or paced:
        print_goals(rows, paced, kinds)
    if args.json:
        print(
            "JSON "
            + json.dumps(
                {"load_before": load_before, "load_after": os.getloadavg()[0], "rows": rows, "paced": paced}
            )
        )
    for kind, what, table in (("events", "events", "events"), ("refresh", "token rotations", "rotations")):
        mine = (kind, f"{kind}-queue")
        accepted = sum(row["accepted_total"] for row in rows + paced if row["scenario"] in mine)
        if any(k in kinds for k in mine):
            ok = "" if counts[table] == accepted else "  <-- MISMATCH"
            print(f"{what} accepted (warm-up included): {accepted}, stored: {counts[table]}{ok}")


def total_cpu(row: dict) -> float:
    return (
        row["cpu_gunicorn_ms"] + row["cpu_postgres_ms"] + row["cpu_redis_ms"] + row.get("cpu_writer_ms", 0.0)
    )


def median(values) -> float:
    import statistics

    values = list(values)
    return statistics.median(values) if values else 0.0


def _writer_column(rows: list[dict]) -> bool:
    """Queue writers' CPU gets a column of its own only when some row has it."""
    return any("cpu_writer_ms" in row for row in rows)


def _writer_cpu(row: dict) -> str:
    return f" {row['cpu_writer_ms']:>7.2f}" if "cpu_writer_ms" in row else f" {'-':>7}"


def print_rows(rows: list[dict], *, rounds: bool) -> None:
    writer = _writer_column(rows)
    print(
        f"{'scenario':<30} {'round':>5} {'load':>5} {'rate':>6} {'requests':>9} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'errors':>7}   CPU ms/request: {'gunicorn':>8} {'postgres':>8} "
        f"{'redis*':>7}" + (f" {'writer':>7}" if writer else "") + f" {'total':>7}"
    )
    for row in rows:
        print(
            f"{SCENARIOS[row['scenario']][1]:<30} {row.get('round', '-')!s:>5} {row['load']:>5.1f} "
            f"{(f'{row["rate"]:.0f}' if row['rate'] else 'max'):>6} {row['requests']:>9} {row['rps']:>8.0f} "
            f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['errors']:>7}   "
            f"{'':>15} {row['cpu_gunicorn_ms']:>8.2f} {row['cpu_postgres_ms']:>8.2f} "
            f"{row['cpu_redis_ms']:>7.2f}"
            + (_writer_cpu(row) if writer else "")
            + f" {total_cpu(row):>7.2f}"
            + (f"  {row['error_kinds']}" if row["errors"] else "")
        )


def print_queue(rows: list[dict], args) -> None:
    """Each queued scenario: the backlog, the drain, the visibility lag and the stored check."""
    queued = [row for row in rows if row["scenario"] == "events-queue"]
    if not queued:
        return
    print(
        f"\nQueued /events ({args.writers} writer(s){', ' + args.writer_args if args.writer_args else ''}): "
        f"backlog = events queued and not yet stored (Redis), max over the measured window and when it "
        f"closed; written/answered = rows stored / requests answered in the window; drain = seconds "
        f"from the load's end to an empty queue; lag = from the answer of every {args.lag_every}th "
        f"request (answered in the window) to its row being visible (polled every 20 ms)"
    )
    print(
        f"{'scenario':<30} {'round':>5} {'rate':>6} {'req/s':>8} {'backlog max':>11} {'at end':>7} "
        f"{'written/answered':>16} {'writer ms/written':>17} {'drain s':>8} {'lag p50':>8} {'p99':>8} "
        f"{'max ms':>8} {'samples':>8} "
        f"{'unseen':>6} {'accepted':>9} {'stored':>9}"
    )
    for row in queued:
        ok = "" if row["stored"] == row["accepted_total"] else "  <-- MISMATCH"
        ok += f"  ({row['dead_letters']} in the dead-letter stream)" if row["dead_letters"] else ""
        behind = "  <-- BEHIND" if row["backlog_end"] > max(100, row["rps"]) else ""
        print(
            f"{SCENARIOS[row['scenario']][1]:<30} {row.get('round', '-')!s:>5} "
            f"{(f'{row["rate"]:.0f}' if row['rate'] else 'max'):>6} {row['rps']:>8.0f} "
            f"{row['backlog_max']:>11} {row['backlog_end']:>7} "
            f"{row['written_in_window'] / max(1, row['requests']):>16.2f} "
            f"{row['cpu_writer_per_written_ms']:>17.2f} "
            f"{(f'{row["drain_s"]:.1f}' if row['drain_s'] is not None else f'>{args.drain_timeout:g}'):>8} "
            f"{row['lag_p50_ms']:>8.0f} {row['lag_p99_ms']:>8.0f} {row['lag_max_ms']:>8.0f} "
            f"{row['lag_samples']:>8} {row['lag_unseen']:>6} {row['accepted_total']:>9} {row['stored']:>9}"
            + ok
            + behind
        )


def print_goals(rows: list[dict], paced: list[dict], kinds: list[str]) -> None:
    """Issue 16's goals: req/s beside the floor's in the same round, CPU per request, and the
    tail at a share of the saturating rate (medians over the rounds)."""
    writer = _writer_column(rows + paced)
    sides = (("cpu_gunicorn_ms", 8), ("cpu_postgres_ms", 8), ("cpu_redis_ms", 7))
    print("\nAgainst the goals (medians over the rounds; ratios are each round's, then their median):")
    floor = {row["round"]: row["rps"] for row in rows if row["scenario"] == "floor"}
    print(
        f"{'scenario':<30} {'req/s':>8} {'vs floor':>9} {'ratios by round':<22} CPU ms/request: "
        f"{'gunicorn':>8} {'postgres':>8} {'redis*':>7}"
        + (f" {'writer':>7}" if writer else "")
        + f" {'total':>7}"
    )
    for kind in kinds:
        mine = [row for row in rows if row["scenario"] == kind]
        ratios = [row["rps"] / floor[row["round"]] for row in mine if floor.get(row["round"])]
        mine_sides = sides + ((("cpu_writer_ms", 7),) if writer and kind == "events-queue" else ())
        print(
            f"{SCENARIOS[kind][1]:<30} {median(r['rps'] for r in mine):>8.0f} "
            f"{(f'{100 * median(ratios):.0f} %' if ratios and kind != 'floor' else '-'):>9} "
            f"{', '.join(f'{100 * x:.0f}' for x in ratios) if kind != 'floor' else '':<22} {'':>15} "
            + " ".join(f"{median(r[side] for r in mine):>{width}.2f}" for side, width in mine_sides)
            + (f" {'-':>7}" if writer and kind != "events-queue" else "")
            + f" {median(total_cpu(r) for r in mine):>7.2f}"
        )
    if paced:
        queued = any(row["scenario"] == "events-queue" for row in paced)
        print(
            f"\n{'paced':<30} {'rate':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/request':>15}"
            + (f" {'lag p50':>8} {'lag p99':>8} {'backlog max':>11} {'at end':>7}" if queued else "")
        )
        for row in paced:
            print(
                f"{SCENARIOS[row['scenario']][1]:<30} {row['rate']:>6.0f} {row['rps']:>8.0f} "
                f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {total_cpu(row):>15.2f}"
                + (
                    f" {row['lag_p50_ms']:>8.0f} {row['lag_p99_ms']:>8.0f} {row['backlog_max']:>11} "
                    f"{row['backlog_end']:>7}"
                    if row["scenario"] == "events-queue"
                    else ""
                )
            )


def writer_drain(args, run: str, tenant_id: str, api_key: str, tenant_pk: int) -> None:
    """The writers alone: queue `args.writer_drain` events through the queue server with no
    writer running, then start `args.writers` writers and time them storing the backlog, with
    their CPU and the database's (from the first stored batch to an empty queue)."""
    import signal

    import redis

    client = redis.Redis.from_url(args.redis_url)
    if queue_backlog(client):
        raise SystemExit(f"the queue in {args.redis_url} is not empty: drain or clear it first")
    env = server_env(args, ingest="queue")
    port = free_port()
    server = start_gunicorn(args, env, port)
    load_before = os.getloadavg()[0]
    writers: list[subprocess.Popen] = []
    try:
        print(f"queueing {args.writer_drain} events (no writer running) ...", flush=True)
        spec = {
            "kind": "events-queue",
            "port": port,
            "run": run,
            "tenant_id": tenant_id,
            "api_key": api_key,
            "first_client": 0,
            "clients": args.clients,
            "measure_from": time.time(),
            "stop_at": time.time() + 3600,
            "interval": 0.0,
            "chains": {},
        }
        filler = subprocess.Popen(
            [sys.executable, __file__, "--client", json.dumps(spec)], stdout=subprocess.DEVNULL
        )
        started = time.time()
        while (queued := queue_backlog(client)) < args.writer_drain:
            if time.time() - started > 600:
                raise SystemExit(f"only {queued} events queued in 600 s")
            time.sleep(0.05)
        filler.send_signal(signal.SIGTERM)
        filler.wait()
        time.sleep(0.5)
        queued = queue_backlog(client)
        stored_before = stored_events(tenant_pk)
        print(
            f"{queued} queued in {time.time() - started:.1f} s; starting {args.writers} writer(s) ...",
            flush=True,
        )
        load_start = os.getloadavg()[0]
        writers = start_writers(args, env, args.writers)
        # From the first stored batch on: the writers' start-up (Django, connections) is not
        # the drain.
        while stored_events(tenant_pk) == stored_before:
            if any(writer.poll() is not None for writer in writers):
                raise SystemExit("a herald_ingest writer exited; see above")
            time.sleep(0.005)
        t0 = time.perf_counter()
        stored_t0 = stored_events(tenant_pk)
        cpu_before = cpu_sample(server, args.redis_url, writers)
        deadline = time.time() + 600
        while queue_backlog(client) and time.time() < deadline:
            time.sleep(0.01)
        cpu = cpu_used(cpu_before, cpu_sample(server, args.redis_url, writers))
        elapsed = time.perf_counter() - t0
        left = queue_backlog(client)
    finally:
        stop_writers(writers)
        server.terminate()
        server.wait(timeout=30)
    stored_after = stored_events(tenant_pk)
    drained = stored_after - stored_t0
    if not args.keep:
        cleanup(run)
    print(
        f"\nWriters alone, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs: {args.writers} "
        f"herald_ingest writer(s) ({args.writer_args or 'defaults'}), load average {load_before:.2f} before, "
        f"{load_start:.2f} at the drain's start, {os.getloadavg()[0]:.2f} after\n"
        f"queued {queued}, stored {stored_after - stored_before}"
        + ("" if not left else f", {left} LEFT")
        + f"; from the first batch: {drained} events in {elapsed:.2f} s = {drained / elapsed:.0f} events/s "
        f"({drained / elapsed / args.writers:.0f} per writer)\n"
        f"CPU ms per event: writer {1000 * cpu['writer'] / drained:.3f} + PostgreSQL "
        f"{1000 * cpu['postgres'] / drained:.3f} + Redis* {1000 * cpu['redis'] / drained:.3f} = "
        f"{1000 * (cpu['writer'] + cpu['postgres'] + cpu['redis']) / drained:.3f} "
        f"(gunicorn, idle: {1000 * cpu['gunicorn'] / drained:.3f})"
    )
    if args.json:
        print("JSON " + json.dumps({"queued": queued, "drained": drained, "seconds": elapsed, "cpu": cpu}))


if __name__ == "__main__":
    main()
