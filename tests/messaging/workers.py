"""Real worker processes for tests: the same commands an operator runs, on the test database."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """A DATABASE_URL for the test database this process is using right now."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    host = s.get("HOST") or "127.0.0.1"
    return f"postgres://{user}@{host}:{s.get('PORT') or 5432}/{s['NAME']}"


def worker_env(**overrides) -> dict:
    # The token endpoints this test allows (the sandbox's, on a port of the moment) too.
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        "FCM_ALLOWED_TOKEN_URIS": ",".join(settings.FCM_ALLOWED_TOKEN_URIS),
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start(*command: str, env: dict) -> subprocess.Popen:
    """Start a command in the background; its output goes to a file (`process.output`).

    Not to a pipe: nobody reads a worker's pipe while it runs, and a worker that logs more
    than the pipe holds (64 KiB on Linux; about 100 small campaign sends' task lines) blocks
    in its next log write and stops taking tasks, which looked like a stalled queue.
    """
    output = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *command],
        env=env,
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.output = output
    return process


def run(*command: str, env: dict, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_claims_to_run_out(*, timeout: float = 30) -> None:
    """Until no delivery is claimed any more: what a dead worker's chunks wait for before
    herald_beat may hand them to another (DELIVERY_CLAIM_SECONDS in the worker's env)."""
    from django.utils import timezone

    from messaging.models import Delivery

    wait_for(
        lambda: not Delivery.objects.filter(claimed_until__gte=timezone.now()).exists(),
        timeout=timeout,
        what="the dead worker's claims to run out",
    )
