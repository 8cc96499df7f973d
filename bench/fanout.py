#!/usr/bin/env python
"""Fan-out benchmark: N devices, one message to all, delivered by one real worker process.

    .venv/bin/python bench/fanout.py                      # 10,000 and 100,000 devices
    .venv/bin/python bench/fanout.py --devices 1000000    # a million
    .venv/bin/python bench/fanout.py --database-url postgres://postgres@127.0.0.1:5432/bench

Prints wall time, messages/second, peak worker memory (VmHWM), the worker's CPU and (on
PostgreSQL) its database backends' CPU per delivery, SQL statements per 1,000 deliveries
(in-process for a 2,000-device message, and in the real worker, task queue included;
`executemany` counts one per row), then firebase-admin's send_each against the same fake
FCM as the yardstick. Loopback only; bounded by the audience size.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the apps: bench/webhooks.py is no app

from fake_fcm import FakeFcm  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc, in seconds (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """CPU of the PostgreSQL backends serving the other clients of this database, sampled
    from /proc (the server runs on this machine): the last reading of each backend counts."""

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


def setup_django(database_url: str, fcm_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["FCM_API_URL"] = fcm_url
    os.environ["FCM_ALLOWED_TOKEN_URIS"] = f"{fcm_url}/token"  # the fake's, for this process and the worker
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)  # DEBUG is off, as in production
    os.environ["TASK_BACKEND"] = "database"
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
    import json

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


def run_once(tenant, count: int, *, database_url: str, fcm_url: str, concurrency: int) -> dict:
    from django.db import connection

    from devices.models import Device
    from messaging.services import MessageInput, create_message

    Device.objects.filter(tenant=tenant).update(push_permission=False)
    prefix = f"n{count}-{time.monotonic_ns()}"
    make_devices(tenant, count, prefix=prefix)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # the plans of an established table
            cursor.execute("ANALYZE")
    message, _ = create_message(
        tenant=tenant,
        spec=MessageInput(
            title="Bench", body="Hello", audience="filter", audience_params={"platforms": ["android"]}
        ),
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FCM_API_URL": fcm_url,
        "SEND_CONCURRENCY": str(concurrency),
        "LOG_LEVEL": "WARNING",
    }
    stats_file = Path(tempfile.mkdtemp(prefix="herald-bench-")) / "statements.json"
    backends = BackendCpu()
    started = time.perf_counter()
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "counting_worker.py"),
            str(stats_file),
            "db_worker",
            "--batch",
            "--no-startup-delay",
            "--interval",
            "0.05",
        ],
        env=env,
        cwd=ROOT,
    )
    peak = 0.0
    while True:
        peak = max(peak, peak_rss_mb(worker.pid))
        backends.sample()
        pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
        if pid:
            worker.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.2)
    wall = time.perf_counter() - started
    worker_cpu = usage.ru_utime + usage.ru_stime
    statements = json.loads(stats_file.read_text())["statements"] if stats_file.exists() else 0
    message.refresh_from_db()
    if message.status != "completed" or message.sent_count != count:
        raise SystemExit(
            f"worker exited with {worker.returncode}; message {message.status}, "
            f"{message.sent_count}/{count} sent"
        )
    return {
        "devices": count,
        "seconds": wall,
        "msgs_per_s": count / wall,
        "peak_mb": peak,
        "worker_cpu_ms": 1000 * worker_cpu / count,
        "db_cpu_ms": 1000 * backends.seconds() / count if backends.enabled else None,
        "statements_per_1000": 1000 * statements / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", default="10000,100000", help="comma-separated audience sizes")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added by the fake FCM")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--yardstick-messages", type=int, default=20_000)
    parser.add_argument("--no-yardstick", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.devices.split(",")]

    tmp = tempfile.mkdtemp(prefix="herald-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    with FakeFcm(latency_ms=args.latency_ms) as fake:
        setup_django(database_url, fake.url)
        from django.db import connection

        tenant, service_account = make_tenant(fake.url)
        per_thousand = queries_per_thousand(tenant)
        rows = [
            run_once(tenant, n, database_url=database_url, fcm_url=fake.url, concurrency=args.concurrency)
            for n in sizes
        ]
        yardstick = (
            None
            if args.no_yardstick
            else measure_yardstick(service_account, fake.url, args.yardstick_messages)
        )

    print(
        f"\nHerald fan-out, one db_worker process, {connection.vendor}, "
        f"fake FCM +{args.latency_ms:g} ms, {args.concurrency} concurrent sends, {os.cpu_count()} cores"
    )
    print(
        f"{'devices':>10} {'wall s':>8} {'msgs/s':>9} {'peak MB':>8} {'worker CPU ms/msg':>18} "
        f"{'db CPU ms/msg':>14} {'statements/1000':>16}"
    )
    for r in rows:
        db_cpu = "-" if r["db_cpu_ms"] is None else f"{r['db_cpu_ms']:.3f}"
        print(
            f"{r['devices']:>10,} {r['seconds']:>8.1f} {r['msgs_per_s']:>9,.0f} {r['peak_mb']:>8.0f} "
            f"{r['worker_cpu_ms']:>18.3f} {db_cpu:>14} {r['statements_per_1000']:>16.1f}"
        )
    print(
        f"statements per 1,000 deliveries in-process (whole send path, 2,000-device message, "
        f"no task queue): {per_thousand:.1f}"
    )
    if yardstick:
        best = max(r["msgs_per_s"] for r in rows)
        print(
            f"\nfirebase-admin send_each, batches of 500, same fake: {yardstick['msgs_per_s']:,.0f} msgs/s "
            f"({yardstick['cpu_ms_per_msg']:.2f} CPU ms/msg, no database)"
        )
        print(f"Herald / firebase-admin: {best / yardstick['msgs_per_s']:.1f}x")
    elif not args.no_yardstick:
        print("\nfirebase-admin yardstick unavailable (see above)")


def measure_yardstick(service_account, fcm_url, count):
    from yardstick import measure

    return measure(service_account=service_account, fcm_url=fcm_url, count=count)


if __name__ == "__main__":
    main()
