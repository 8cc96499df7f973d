#!/usr/bin/env python
"""Fan-out benchmark: N devices, one message to all, delivered by real worker processes.

    .venv/bin/python bench/fanout.py                      # 10,000 and 100,000 devices
    .venv/bin/python bench/fanout.py --devices 1000000    # a million
    .venv/bin/python bench/fanout.py --database-url postgres://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/fanout.py --database-url postgres://…/bench --devices 30000 \\
        --transport urllib3,curl --rounds 3                # both FCM transports, interleaved
    .venv/bin/python bench/fanout.py --database-url postgres://…/bench --devices 30000 \\
        --transport curl --backend database,rq --workers 1,2,4 --redis-url redis://127.0.0.1:6379/11

The fake FCM is nginx over TLS (`nginx_fcm.py`: HTTP/2 for clients that offer it, a
self-signed CA the workers and the yardstick trust through REQUESTS_CA_BUNDLE, which both
of Herald's transports and firebase-admin read) when nginx is installed, else (or with
`--fcm python`) `fake_fcm.py` over plain HTTP/1.1.

Every configuration (transport × task backend × worker count) runs once per round, in an
order rotated each round, beside firebase-admin's send_each against the same fake (the
yardstick, same pass); medians over the rounds. For each run: wall time (worker start-up
excluded: the workers are started and idle before the message is created), messages/s,
the workers' CPU per delivery (RQ's forked work horses included) and, on PostgreSQL, the
CPU of the database backends serving them, SQL statements per 1,000 deliveries (counted
in the workers by `counting_worker.py`; `executemany` counts one per row), the worker's
peak memory and its memory over time (RSS of the worker and its children, sampled), the
cores each process group used (workers, PostgreSQL backends, nginx, redis-server) beside
the machine's, and on PostgreSQL the growth of the database and of messaging_delivery per
delivery. Plus statements per 1,000 deliveries in-process for a 2,000-device message.
Loopback only; bounded by the audience size.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the apps: bench/webhooks.py is no app

from counting_worker import total_statements  # noqa: E402
from fake_fcm import FakeFcm  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """Memory of a process and its children (RQ's work horse), in MB: its RSS alone, or
    with children the PSS of each (a forked child shares its pages with its parent)."""
    kids = children(pid)
    if not kids:
        return rss_mb(pid)
    return pss_mb(pid) + sum(pss_mb(child) for child in kids)


def cpu_seconds(pid: int, *, reaped: bool = False) -> float | None:
    """utime + stime of a process from /proc, in seconds (None once it is gone); with
    `reaped`, plus that of the children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK, sum(values[:8]) / CLK_TCK


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class ProcessCpu:
    """CPU spent from now on by a fixed set of processes (their waited-for children too)."""

    def __init__(self, pids: list[int]):
        self.start = {pid: cpu_seconds(pid, reaped=True) or 0.0 for pid in pids}

    def seconds(self) -> float:
        return sum((cpu_seconds(pid, reaped=True) or start) - start for pid, start in self.start.items())


class BackendCpu:
    """CPU of the PostgreSQL backends serving the other clients of this database, sampled
    from /proc (the server runs on this machine): the last reading of each backend counts.
    A short-lived backend (one per RQ job) is missed for its start and its last interval."""

    def __init__(self):
        from django.db import connection

        self.enabled = connection.vendor == "postgresql"
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        if self.enabled:
            self.sample(initial=True)

    def sample(self, *, initial: bool = False) -> None:
        if not self.enabled:
            return
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            pids = [pid for (pid,) in cursor.fetchall()]
        for pid in pids:
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            if initial:
                self.start[pid] = cpu  # not ours: only what it spends from now on
            self.last[pid] = cpu

    def seconds(self) -> float:
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())


def setup_django(
    database_url: str,
    fcm_url: str,
    *,
    token_url: str | None = None,
    ca_file: str | None = None,
    redis_url: str | None = None,
    rq: bool = False,
) -> None:
    """Django for this process; the environment it sets is inherited by the workers.

    `token_url` defaults to the fake's `<fcm_url>/token`; `ca_file` (the nginx fake's
    self-signed certificate) goes to REQUESTS_CA_BUNDLE, which both FCM transports,
    google-auth's token requests and firebase-admin trust. With `rq`, django_rq is
    installed here too (the benchmark creates messages on either backend)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["FCM_API_URL"] = fcm_url
    # The fake's token endpoint, for this process and the workers.
    os.environ["FCM_ALLOWED_TOKEN_URIS"] = token_url or f"{fcm_url}/token"
    if ca_file:
        os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)  # DEBUG is off, as in production
    os.environ["TASK_BACKEND"] = "rq" if rq else "database"
    os.environ["FCM_SANDBOX_ENABLED"] = "1"  # its service-account maker signs the bench's key
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_tenant(fcm_url: str):
    from fcm_sandbox.accounts import create_service_account
    from tenants.credentials import set_credentials
    from tenants.models import Tenant

    Tenant.objects.filter(tenant_id="bench").delete()
    tenant = Tenant.objects.create(name="Bench", tenant_id="bench")
    info = create_service_account(project_id="bench-project", token_uri=f"{fcm_url}/token")

    set_credentials(tenant=tenant, raw=json.dumps(info))
    return tenant, info


def make_devices(tenant, count: int, *, prefix: str) -> None:
    from devices.models import AppUser, Device, hash_token

    batch = 10_000
    for start in range(0, count, batch):
        n = range(start, min(start + batch, count))
        users = AppUser.objects.bulk_create([AppUser(tenant=tenant, app_user_id=f"{prefix}-u{i}") for i in n])
        Device.objects.bulk_create(
            [
                Device(
                    tenant=tenant,
                    user=u,
                    token=f"{prefix}-token-{i}",
                    token_hash=hash_token(f"{prefix}-token-{i}"),
                    platform="android",
                    push_permission=True,
                )
                for i, u in zip(n, users, strict=True)
            ]
        )


def make_devices_sql(tenant, count: int, *, prefix: str) -> None:
    """make_devices, on PostgreSQL, in two INSERT … SELECT generate_series statements: a
    million devices in about a minute instead of many. One user and one device made by the
    ORM are the template for every column but the names, tokens and ids."""
    from django.db import connection

    from devices.models import AppUser, Device

    template = f"{prefix}-template"
    make_devices(tenant, 1, prefix=template)
    user = AppUser.objects.get(tenant=tenant, app_user_id=f"{template}-u0")
    device = Device.objects.get(user=user)
    user_columns = [f.column for f in AppUser._meta.concrete_fields if not f.primary_key]
    device_columns = [f.column for f in Device._meta.concrete_fields if not f.primary_key]
    user_values = ["%(prefix)s || '-u' || g" if c == "app_user_id" else f"t.{c}" for c in user_columns]
    token = "(%(prefix)s || '-token-' || g)"
    device_values = [
        {
            "token": token,
            "token_hash": f"encode(sha256(convert_to({token}, 'UTF8')), 'hex')",
            "user_id": "u.id",
        }.get(c, f"t.{c}")
        for c in device_columns
    ]
    params = {"prefix": prefix, "last": count - 1, "user": user.pk, "device": device.pk}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {AppUser._meta.db_table} ({', '.join(user_columns)}) "
            f"SELECT {', '.join(user_values)} FROM {AppUser._meta.db_table} t, "
            "generate_series(0, %(last)s) g WHERE t.id = %(user)s",
            params,
        )
        cursor.execute(
            f"INSERT INTO {Device._meta.db_table} ({', '.join(device_columns)}) "
            f"SELECT {', '.join(device_values)} FROM {Device._meta.db_table} t "
            "CROSS JOIN generate_series(0, %(last)s) g "
            f"JOIN {AppUser._meta.db_table} u ON u.tenant_id = t.tenant_id "
            "AND u.app_user_id = %(prefix)s || '-u' || g WHERE t.id = %(device)s",
            params,
        )
    Device.objects.filter(pk=device.pk).update(push_permission=False)  # the template is no target


def queries_per_thousand(tenant) -> float:
    """Queries the whole send path makes, in-process, for a 2,000-device message."""
    from django.db import connection
    from django.test.utils import override_settings

    from messaging.services import MessageInput, create_message

    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += len(params) if many and params is not None else 1
        return execute(sql, params, many, context)

    make_devices(tenant, 2000, prefix="q")
    immediate = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    with override_settings(TASKS=immediate):
        with connection.execute_wrapper(count):
            message, _ = create_message(
                tenant=tenant,
                spec=MessageInput(
                    title="Q",
                    body="count",
                    audience="tokens",
                    audience_params={"tokens": [f"q-token-{i}" for i in range(2000)]},
                ),
            )
    message.refresh_from_db()
    assert message.sent_count == 2000, message.status
    from devices.models import Device

    Device.objects.filter(token__startswith="q-token-").update(push_permission=False)
    return statements / 2


def sizes() -> dict | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_database_size(current_database()), pg_total_relation_size('messaging_delivery')"
        )
        database, delivery = cursor.fetchone()
    return {"database": database, "delivery": delivery}


def clear_queues(backend: str, redis_url: str | None) -> None:
    """Nothing left from an earlier run for the new workers to pick up."""
    if backend == "rq":
        import redis

        redis.Redis.from_url(redis_url).flushdb()  # the bench's own Redis database
    else:
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.filter(status="READY").delete()


def worker_command(backend: str, stats_file: Path, index: int) -> list[str]:
    command = [sys.executable, str(ROOT / "bench" / "counting_worker.py"), str(stats_file)]
    if backend == "rq":
        # README's command; one scheduler (delayed retries) among the workers.
        return [
            *command,
            "rqworker",
            "--job-class",
            "django_tasks_rq.Job",
            *(["--with-scheduler"] if index == 0 else []),
            "default",
        ]
    return [*command, "db_worker", "--no-startup-delay", "--interval", "0.05"]


def print_kinds(stats_files: list[Path], count: int, label: str) -> None:
    """HERALD_COUNT_SQL_PRINT=1: the workers' statements per 1,000 deliveries by kind."""
    kinds: dict[str, int] = {}
    ms: dict[str, float] = {}  # with HERALD_COUNT_SQL_TIME=1: client-side ms by kind
    for path in stats_files:
        if path.exists():
            stats = json.loads(path.read_text())
            for name, n in stats.get("kinds", {}).items():
                kinds[name] = kinds.get(name, 0) + n
            for name, t in stats.get("milliseconds", {}).items():
                ms[name] = ms.get(name, 0.0) + t
    print(f"statements per 1,000 deliveries by kind ({label}):")
    for name, n in sorted(kinds.items(), key=lambda item: -item[1]):
        timed = f"{ms[name]:9.0f} ms" if name in ms else ""
        print(f"  {1000 * n / count:7.2f}  {n:>7}  {timed}  {name}")
    print(f"  {1000 * sum(kinds.values()) / count:7.2f}  {sum(kinds.values()):>7}  total")


def stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_started(pids: list[int], *, timeout: float = 30.0) -> None:
    """Until every worker has stopped spending CPU on its start-up (Django, imports)."""
    deadline = time.monotonic() + timeout
    last = [cpu_seconds(pid) or 0.0 for pid in pids]
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(0.3)
        now = [cpu_seconds(pid) or 0.0 for pid in pids]
        busy = any(b - a > 0.1 for a, b in zip(last, now, strict=True))  # > a third of a core
        quiet = 0 if busy else quiet + 1
        last = now


def run_once(
    tenant,
    count: int,
    *,
    database_url: str,
    fcm_url: str,
    concurrency: int,
    transport: str = "urllib3",
    backend: str = "database",
    workers: int = 1,
    redis_url: str | None = None,
    nginx_pids: list[int] = (),
    sample_every: float = 0.2,
    stall_seconds: float = 180.0,
) -> dict:
    from django.db import connection

    from devices.models import Device
    from messaging.models import Message

    Device.objects.filter(tenant=tenant).update(push_permission=False)
    prefix = f"n{count}-{time.monotonic_ns()}"
    if connection.vendor == "postgresql":
        make_devices_sql(tenant, count, prefix=prefix)
        with connection.cursor() as cursor:  # the plans of an established table
            cursor.execute("ANALYZE")
    else:
        make_devices(tenant, count, prefix=prefix)
    clear_queues(backend, redis_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FCM_API_URL": fcm_url,
        "SEND_CONCURRENCY": str(concurrency),
        "HERALD_FCM_TRANSPORT": transport,
        "TASK_BACKEND": backend,
        "LOG_LEVEL": "WARNING",
    }
    stats_dir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    stats_files = [stats_dir / f"statements-{i}.json" for i in range(workers)]
    log = open(stats_dir / "workers.log", "wb")  # noqa: SIM115 (closed with the run)
    processes = [
        subprocess.Popen(
            worker_command(backend, stats_files[i], i),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        pids = [p.pid for p in processes]
        wait_started(pids)
        for pid in pids:
            os.kill(pid, signal.SIGUSR2)  # counting_worker: start-up and idle polls do not count
        worker_start = {pid: cpu_seconds(pid) or 0.0 for pid in pids}
        backends = BackendCpu()
        others = {
            "nginx": ProcessCpu(list(nginx_pids)),
            "redis": ProcessCpu(pids_named("redis-server") if backend == "rq" else []),
        }
        size_before = sizes()
        machine_before, measured_from = machine_cpu(), time.time()
        load = [os.getloadavg()[0]]

        # Made by a process of the worker's backend (one process cannot enqueue to both).
        # Once it has started up, the workers' counts are zeroed again: their idle polls
        # while it started (20 a second, 10 to 50 a run as the machine is loaded) do not count.
        maker = subprocess.Popen(
            [sys.executable, __file__, "--create-message", str(tenant.pk)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = maker.stdout.readline()
        if ready.strip() == "ready":
            for pid in pids:
                os.kill(pid, signal.SIGUSR2)
        out, err = maker.communicate("go\n")
        if maker.returncode != 0:
            stop(processes)
            raise SystemExit(f"could not create the message:\n{err[-3000:]}")
        created = json.loads((ready + out).strip().splitlines()[-1])
        started = created["started"]
        message = Message.objects.get(pk=created["message"])
        peak = 0.0
        memory: list[tuple[float, float]] = []  # (seconds, MB of the first worker and its children)
        progress, progress_at = -1, time.monotonic()
        next_poll = 0.0
        status = None
        while True:
            now = time.monotonic()
            rss = [tree_rss_mb(pid) for pid in pids]
            peak = max(peak, *rss)
            memory.append((time.time() - started, rss[0]))
            backends.sample()
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                stop(processes)
                raise SystemExit(
                    f"a worker exited with {dead[0].returncode} before the message completed:\n"
                    + (stats_dir / "workers.log").read_text()[-3000:]
                )
            if now >= next_poll:
                next_poll = now + 0.5
                status, sent, failed = Message.objects.filter(pk=message.pk).values_list(
                    "status", "sent_count", "failed_count"
                )[0]
                if status in ("completed", "failed", "cancelled"):
                    break
                if sent + failed != progress:
                    progress, progress_at = sent + failed, now
                elif now - progress_at > stall_seconds:
                    break
            time.sleep(sample_every)
    except BaseException:
        stop(processes)  # no worker outlives a failed run
        raise
    finished = time.time()
    load.append(os.getloadavg()[0])
    backends.sample()
    machine_after = machine_cpu()
    other_cpu = {name: cpu.seconds() for name, cpu in others.items()}
    for pid in pids:
        peak = max(peak, peak_rss_mb(pid))

    worker_cpu = 0.0
    for process in processes:
        process.send_signal(signal.SIGTERM)  # both workers finish the task at hand and leave
    for process in processes:
        deadline = time.monotonic() + 60
        while True:
            pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(wait_status)
                break
            if time.monotonic() > deadline:
                process.kill()
                deadline = float("inf")
            time.sleep(0.05)
        # wait4's usage includes the children it reaped (RQ's work horses).
        worker_cpu += usage.ru_utime + usage.ru_stime - worker_start[process.pid]
    statements = sum(total_statements(f) for f in stats_files)
    log.close()

    message.refresh_from_db()
    if message.status != "completed" or message.sent_count != count:
        raise SystemExit(
            f"message {message.status}, {message.sent_count}/{count} sent, "
            f"{message.failed_count} failed ({transport}, {backend}, {workers} workers):\n"
            + (stats_dir / "workers.log").read_text()[-3000:]
        )
    if os.environ.get("HERALD_COUNT_SQL_PRINT") == "1":
        print_kinds(stats_files, count, f"{transport}, {backend}, {workers} worker(s)")
    shutil.rmtree(stats_dir, ignore_errors=True)
    wall = (message.completed_at.timestamp() if message.completed_at else finished) - started
    size_after = sizes()
    machine_busy = (machine_after[0] - machine_before[0]) / (finished - measured_from)
    return {
        "devices": count,
        "transport": transport,
        "backend": backend,
        "workers": workers,
        "seconds": wall,
        "msgs_per_s": count / wall,
        "peak_mb": peak,
        "memory": memory,
        "worker_cpu_ms": 1000 * worker_cpu / count,
        "db_cpu_ms": 1000 * backends.seconds() / count if backends.enabled else None,
        "statements_per_1000": 1000 * statements / count,
        "cores": {
            "workers": worker_cpu / wall,
            "postgres": backends.seconds() / wall if backends.enabled else None,
            **{name: seconds / wall for name, seconds in other_cpu.items()},
            "machine": machine_busy,
        },
        "db_bytes_per_delivery": (size_after["database"] - size_before["database"]) / count
        if size_before
        else None,
        "delivery_bytes_per_delivery": (size_after["delivery"] - size_before["delivery"]) / count
        if size_before
        else None,
        "load": load,
    }


def memory_series(memory: list[tuple[float, float]], points: int = 10) -> str:
    """RSS at `points` evenly spaced moments of the run, e.g. '0s 98, 12s 101, …'."""
    if not memory:
        return "-"
    end = memory[-1][0]
    picked = []
    for k in range(points + 1):
        moment = end * k / points
        picked.append(min(memory, key=lambda sample: abs(sample[0] - moment)))
    return ", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in picked)


def label(config: tuple) -> str:
    transport, backend, workers = config
    return f"{backend} ×{workers} {transport}"


def median_of(runs: list[dict], key) -> tuple[float, list[float]]:
    values = [key(r) for r in runs]
    return statistics.median(values), values


def create_message_here(tenant_pk: int) -> None:
    """--create-message: the bench's message, enqueued on this environment's TASK_BACKEND;
    prints its id and when its creation started."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from messaging.services import MessageInput, create_message
    from tenants.models import Tenant

    tenant = Tenant.objects.get(pk=tenant_pk)
    print("ready", flush=True)  # started up: the bench zeroes the workers' counts, then says go
    sys.stdin.readline()
    started = time.time()
    message, _ = create_message(
        tenant=tenant,
        spec=MessageInput(
            title="Bench", body="Hello", audience="filter", audience_params={"platforms": ["android"]}
        ),
    )
    print(json.dumps({"message": message.pk, "started": started}))


def main() -> None:
    if sys.argv[1:2] == ["--create-message"]:
        return create_message_here(int(sys.argv[2]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", default="10000,100000", help="comma-separated audience sizes")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added by the fake FCM")
    parser.add_argument("--concurrency", type=int, default=128, help="SEND_CONCURRENCY (urllib3)")
    parser.add_argument(
        "--fcm",
        choices=["nginx", "python"],
        default="nginx" if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx") else "python",
        help="the fake FCM: nginx over TLS (default when installed) or fake_fcm.py over HTTP",
    )
    parser.add_argument("--transport", default="urllib3", help="HERALD_FCM_TRANSPORT values: urllib3,curl")
    parser.add_argument("--backend", default="database", help="task backends: database,rq")
    parser.add_argument("--workers", default="1", help="worker processes per run: 1,2,4")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
    parser.add_argument("--redis-url", help="for --backend rq: a Redis database of the bench's own")
    parser.add_argument("--yardstick-messages", type=int, default=20_000)
    parser.add_argument("--no-yardstick", action="store_true")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process statement count")
    parser.add_argument("--memory-points", type=int, default=10, help="moments of the memory series")
    args = parser.parse_args()
    sizes_ = [int(n) for n in args.devices.split(",")]
    configs = [
        (transport, backend, int(workers))
        for backend in args.backend.split(",")
        for workers in args.workers.split(",")
        for transport in args.transport.split(",")
    ]
    rq = any(backend == "rq" for _, backend, _ in configs)
    if rq and not args.redis_url:
        parser.error("--backend rq needs --redis-url (a Redis database of the bench's own)")
    if not args.no_yardstick:
        configs.append(("send_each", None, None))

    tmp = tempfile.mkdtemp(prefix="herald-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    if args.fcm == "nginx":
        from nginx_fcm import NginxFcm

        fake = NginxFcm()
    else:
        fake = FakeFcm(latency_ms=args.latency_ms)
    results: dict[tuple, list[dict]] = {}
    with fake:
        if args.fcm == "nginx":
            fcm_url, ca_file, nginx_pids = fake.latency_url(args.latency_ms), fake.ca_file, [fake.process.pid]
            nginx_pids += children(fake.process.pid)
        else:
            fcm_url, ca_file, nginx_pids = fake.url, None, []
        setup_django(
            database_url,
            fcm_url,
            token_url=f"{fake.url}/token",
            ca_file=ca_file,
            redis_url=args.redis_url,
        )
        from django.db import connection

        tenant, service_account = make_tenant(fake.url)
        per_thousand = None if args.no_in_process else queries_per_thousand(tenant)
        for round_ in range(args.rounds):
            order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
            for n in sizes_:
                for config in order:
                    transport, backend, workers = config
                    if transport == "send_each":
                        load = os.getloadavg()[0]
                        result = measure_yardstick(service_account, fcm_url, args.yardstick_messages)
                        if result is None:
                            continue
                        result["load"] = [load, os.getloadavg()[0]]
                        results.setdefault((n, config), []).append(result)
                        print(
                            f"round {round_ + 1}: send_each {result['msgs_per_s']:,.0f} msgs/s, "
                            f"{result['cpu_ms_per_msg']:.3f} CPU ms/msg, load {load:.1f}",
                            file=sys.stderr,
                            flush=True,
                        )
                        continue
                    r = run_once(
                        tenant,
                        n,
                        database_url=database_url,
                        fcm_url=fcm_url,
                        concurrency=args.concurrency,
                        transport=transport,
                        backend=backend,
                        workers=workers,
                        redis_url=args.redis_url,
                        nginx_pids=nginx_pids,
                    )
                    results.setdefault((n, config), []).append(r)
                    db_cpu = "-" if r["db_cpu_ms"] is None else f"{r['db_cpu_ms']:.3f}"
                    print(
                        f"round {round_ + 1}: {n:,} devices, {label(config)}: {r['msgs_per_s']:,.0f} msgs/s, "
                        f"worker {r['worker_cpu_ms']:.3f} + db {db_cpu} CPU ms/delivery, "
                        f"{r['statements_per_1000']:.1f} statements/1000, peak {r['peak_mb']:.0f} MB, "
                        f"load {r['load'][0]:.1f}–{r['load'][1]:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )

    fcm_name = (
        "nginx fake FCM over TLS (HTTP/2 where the client offers it)"
        + (f" +{args.latency_ms:g} ms" if args.latency_ms else "")
        if args.fcm == "nginx"
        else f"fake_fcm.py over HTTP/1.1 +{args.latency_ms:g} ms"
    )
    print(
        f"\nHerald fan-out, real worker processes, {connection.vendor}, {fcm_name}, "
        f"SEND_CONCURRENCY {args.concurrency} (urllib3), {os.cpu_count()} cores, "
        f"{args.rounds} round(s) interleaved"
    )
    print(
        f"{'devices':>10} {'config':<22} {'wall s':>8} {'msgs/s':>9} {'peak MB':>8} "
        f"{'worker CPU ms/msg':>18} "
        f"{'db CPU ms/msg':>14} {'statements/1000':>16} {'load':>10}"
    )
    for (n, config), runs in results.items():
        if config[0] == "send_each":
            continue
        for r in runs:
            db_cpu = "-" if r["db_cpu_ms"] is None else f"{r['db_cpu_ms']:.3f}"
            print(
                f"{n:>10,} {label(config):<22} {r['seconds']:>8.1f} {r['msgs_per_s']:>9,.0f} "
                f"{r['peak_mb']:>8.0f} "
                f"{r['worker_cpu_ms']:>18.3f} {db_cpu:>14} {r['statements_per_1000']:>16.1f} "
                f"{r['load'][0]:>4.1f}–{r['load'][1]:<4.1f}"
            )
    if per_thousand is not None:
        print(
            f"statements per 1,000 deliveries in-process (whole send path, 2,000-device message, "
            f"no task queue): {per_thousand:.1f}"
        )

    # Medians, and the ratio to send_each in the same pass.
    print("\nMedians (values of each round in brackets):")
    print(
        "| devices | configuration | msgs/s | vs send_each | worker CPU ms/delivery | PostgreSQL CPU "
        "ms/delivery | statements/1,000 | peak worker MB | cores: workers / PostgreSQL / nginx / redis "
        "/ machine | DB bytes/delivery | messaging_delivery bytes/delivery | load |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for n in sizes_:
        yard = results.get((n, ("send_each", None, None)))
        yard_rate = statistics.median(r["msgs_per_s"] for r in yard) if yard else None
        for config in configs:
            runs = results.get((n, config))
            if not runs:
                continue
            loads = [x for r in runs for x in r["load"]]
            load_text = f"{min(loads):.1f}–{max(loads):.1f}"
            rate, rates = median_of(runs, lambda r: r["msgs_per_s"])
            brackets = ", ".join(f"{x:,.0f}" for x in rates)
            if config[0] == "send_each":
                cpu, _ = median_of(runs, lambda r: r["cpu_ms_per_msg"])
                print(
                    f"| {args.yardstick_messages:,} msgs | firebase-admin send_each, batches of 500 | "
                    f"{rate:,.0f} [{brackets}] | 1.00x | {cpu:.3f} (no database) | – | – | – | – | – | – "
                    f"| {load_text} |"
                )
                continue
            ratio = f"{rate / yard_rate:.2f}x" if yard_rate else "–"
            worker_cpu, _ = median_of(runs, lambda r: r["worker_cpu_ms"])
            db = [r["db_cpu_ms"] for r in runs if r["db_cpu_ms"] is not None]
            db_text = f"{statistics.median(db):.3f}" if db else "–"
            statements, _ = median_of(runs, lambda r: r["statements_per_1000"])
            peak, _ = median_of(runs, lambda r: r["peak_mb"])

            def core(name, runs=runs):
                values = [r["cores"][name] for r in runs if r["cores"].get(name) is not None]
                return f"{statistics.median(values):.2f}" if values else "–"

            cores = " / ".join(core(name) for name in ("workers", "postgres", "nginx", "redis", "machine"))
            growth = [r["db_bytes_per_delivery"] for r in runs if r["db_bytes_per_delivery"] is not None]
            growth_text = f"{statistics.median(growth):,.0f}" if growth else "–"
            table = [
                r["delivery_bytes_per_delivery"] for r in runs if r["delivery_bytes_per_delivery"] is not None
            ]
            table_text = f"{statistics.median(table):,.0f}" if table else "–"
            print(
                f"| {n:,} | {label(config)} | {rate:,.0f} [{brackets}] | {ratio} | {worker_cpu:.3f} | "
                f"{db_text} | {statements:.1f} | {peak:.0f} | {cores} | {growth_text} | {table_text} "
                f"| {load_text} |"
            )
    print("\nWorker memory over time (RSS MB of the first worker and its children, last round):")
    for (n, config), runs in results.items():
        if config[0] != "send_each":
            print(f"{n:,} {label(config)}: {memory_series(runs[-1]['memory'], args.memory_points)}")
    yard = [r for (n, config), runs in results.items() if config[0] == "send_each" for r in runs]
    if yard:
        best = max(r["msgs_per_s"] for (n, c), runs in results.items() if c[0] != "send_each" for r in runs)
        yard_rate = statistics.median(r["msgs_per_s"] for r in yard)
        print(
            f"\nfirebase-admin send_each, batches of 500, same fake: {yard_rate:,.0f} msgs/s "
            f"({statistics.median(r['cpu_ms_per_msg'] for r in yard):.2f} CPU ms/msg, no database)"
        )
        print(f"Herald / firebase-admin: {best / yard_rate:.1f}x")
    elif not args.no_yardstick:
        print("\nfirebase-admin yardstick unavailable (see above)")


def measure_yardstick(service_account, fcm_url, count):
    from yardstick import measure

    return measure(service_account=service_account, fcm_url=fcm_url, count=count)


if __name__ == "__main__":
    main()
