#!/usr/bin/env python
"""Kill a worker mid-send and count what the crash costs: duplicate pushes, queue churn, a bystander's wait.

    .venv/bin/python bench/worker_crash.py                          # 5,000 devices, SQLite
    .venv/bin/python bench/worker_crash.py --devices 2000 --latency-ms 50
    .venv/bin/python bench/worker_crash.py --database-url postgres://postgres@127.0.0.1:5432/crash

What it does, all on 127.0.0.1 with real processes (the operator's commands):

1. starts the FCM sandbox (`manage.py fcm_sandbox --latency-ms …`), which records every
   message it accepts, per token;
2. gives tenant "crash" N Android devices and tenant "bystander" one, and queues one
   message to all of "crash"'s devices;
3. starts a `db_worker`, waits until a share of the deliveries is marked sent and kills it
   with SIGKILL;
4. at once starts a replacement `db_worker` and `herald_beat`, as a supervisor would, and
   queues a one-device message for "bystander";
5. waits for both messages to finish, then counts:

* **received twice**: devices the sandbox delivered the message to more than once (FCM
  accepted it, the crash lost the record, the delivery was sent again);
* **shown twice**: of those, devices whose copies carry no common collapse key (Android
  `collapse_key`, APNs `apns-collapse-id`, Web Push `Topic`), so the phone would show both;
* **tasks queued** while the dead worker's claims were still running (a retry storm shows
  here), and the most rows the task table held at once;
* **bystander wait**: seconds from queueing the bystander's message to its completion.

Run it once on a commit before a change and once after; bench/README.md keeps the figures.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_django(database_url: str, fcm_url: str) -> None:
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "FCM_API_URL": fcm_url,
            "FCM_SANDBOX_ENABLED": "1",
            # The sandbox's token endpoint is the only token_uri Herald will fetch besides
            # Google's: this one's, on its free port.
            "FCM_SANDBOX_URL": fcm_url,
            "TASK_BACKEND": "database",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def manage(*command: str, env: dict, quiet: bool = True) -> subprocess.Popen:
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *command], env=env, cwd=ROOT, stdout=out, stderr=out
    )


def make_tenant(tenant_id: str, devices: int, sandbox_url: str):
    from devices.models import AppUser, Device, hash_token
    from fcm_sandbox.accounts import provision_tenant
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name=tenant_id.title(), tenant_id=tenant_id)
    provision_tenant(tenant=tenant, sandbox_url=sandbox_url)
    users = AppUser.objects.bulk_create(
        [AppUser(tenant=tenant, app_user_id=f"{tenant_id}-u{i}") for i in range(devices)]
    )
    Device.objects.bulk_create(
        [
            Device(
                tenant=tenant,
                user=user,
                token=f"{tenant_id}-token-{i}",
                token_hash=hash_token(f"{tenant_id}-token-{i}"),
                platform="android",
                push_permission=True,
            )
            for i, user in enumerate(users)
        ]
    )
    return tenant


def collapse_ids(message: dict) -> set[str]:
    """Every collapse identifier an FCM message carries (the sandbox stores camelCase)."""
    ids = set()
    if key := (message.get("android") or {}).get("collapseKey"):
        ids.add(f"android:{key}")
    if key := ((message.get("apns") or {}).get("headers") or {}).get("apns-collapse-id"):
        ids.add(f"apns:{key}")
    if key := ((message.get("webpush") or {}).get("headers") or {}).get("Topic"):
        ids.add(f"webpush:{key}")
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--latency-ms", type=int, default=20, help="the sandbox's added latency per send")
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.33,
        help="share of deliveries sent before the kill (not a multiple of the chunk size: "
        "a worker between two chunks has nothing in flight)",
    )
    parser.add_argument(
        "--claim-seconds", type=int, default=15, help="DELIVERY_CLAIM_SECONDS for the workers"
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="herald-crash-")
    database_url = args.database_url or f"sqlite:///{tmp}/crash.sqlite3"
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    setup_django(database_url, sandbox_url)

    from django.db.models import Count
    from django_tasks_db.models import DBTaskResult

    from fcm_sandbox.models import SandboxMessage
    from messaging.models import Delivery, Message
    from messaging.services import MessageInput, create_message
    from tests.messaging.workers import wait_for

    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "DELIVERY_CLAIM_SECONDS": str(args.claim_seconds),
        "DELIVERY_RECOVERY_GRACE_SECONDS": "2",
    }
    processes: list[subprocess.Popen] = []
    try:
        processes.append(
            manage(
                "fcm_sandbox", "--port", str(port), "--latency-ms", str(args.latency_ms), "--quiet", env=env
            )
        )
        wait_for(lambda: _answers(port), timeout=30, what="the sandbox")
        crash = make_tenant("crash", args.devices, sandbox_url)
        bystander = make_tenant("bystander", 1, sandbox_url)

        message, _ = create_message(tenant=crash, spec=MessageInput(title="Crash", body="test"))
        worker = manage("db_worker", "--no-startup-delay", "--interval", "0.05", env=env)
        processes.append(worker)
        kill_at = max(1, int(args.devices * args.kill_at))
        wait_for(
            lambda: Delivery.objects.filter(message=message, status="sent").count() >= kill_at,
            timeout=600,
            what="the first worker to send",
            interval=0.01,
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed_at = time.monotonic()
        sent_at_kill = Delivery.objects.filter(message=message, status="sent").count()
        tasks_at_kill = DBTaskResult.objects.count()

        processes.append(manage("db_worker", "--no-startup-delay", "--interval", "0.05", env=env))
        processes.append(manage("herald_beat", "--interval", "1", env=env))
        queued_at = time.monotonic()
        small, _ = create_message(tenant=bystander, spec=MessageInput(title="Bystander", body="hello"))

        most_tasks, bystander_wait = tasks_at_kill, None
        claims_out = killed_at + args.claim_seconds
        tasks_in_claim_window = None
        deadline = time.monotonic() + 600 + args.claim_seconds
        while time.monotonic() < deadline:
            tasks = DBTaskResult.objects.count()
            most_tasks = max(most_tasks, tasks)
            if tasks_in_claim_window is None and time.monotonic() >= claims_out:
                tasks_in_claim_window = tasks - tasks_at_kill
            if bystander_wait is None and Message.objects.get(pk=small.pk).is_final:
                bystander_wait = time.monotonic() - queued_at
            if tasks_in_claim_window is not None and Message.objects.get(pk=message.pk).is_final:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("timed out waiting for the message to finish")
        total_wall = time.monotonic() - killed_at
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    message.refresh_from_db()
    received = defaultdict(list)
    for target, body in SandboxMessage.objects.filter(target__startswith="crash-").values_list(
        "target", "message"
    ):
        received[target].append(body)
    twice = {t: copies for t, copies in received.items() if len(copies) > 1}
    shown_twice = sum(1 for copies in twice.values() if not set.intersection(*map(collapse_ids, copies)))
    most_copies = max((len(c) for c in received.values()), default=0)
    statuses = dict(Delivery.objects.filter(message=message).values_list("status").annotate(n=Count("id")))

    print(
        f"\nworker killed mid-send: {args.devices:,} devices, sandbox +{args.latency_ms} ms, "
        f"{Path(database_url).name if database_url.startswith('sqlite') else 'PostgreSQL'}, "
        f"claims of {args.claim_seconds} s"
    )
    print(f"  marked sent when killed           {sent_at_kill:,}")
    print(f"  message ended                     {message.status} ({statuses})")
    print(f"  devices that received it          {len(received):,}")
    print(f"  devices that received it twice    {len(twice):,} (most copies to one device: {most_copies})")
    print(f"  ... of which shown twice          {shown_twice:,} (no shared collapse key)")
    print(
        f"  tasks queued while claims ran     {tasks_in_claim_window:,} "
        f"({tasks_in_claim_window / args.claim_seconds:,.1f}/s); most task rows at once {most_tasks:,}"
    )
    small.refresh_from_db()
    print(
        f"  bystander's 1-device message      {bystander_wait:.1f} s from queueing to completed"
        if bystander_wait is not None
        else f"  bystander's message not finished ({small.status}) {total_wall:.1f} s after queueing"
    )
    print(f"  kill to last delivery             {total_wall:.1f} s")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
