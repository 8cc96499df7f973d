"""`make demo` as a new user meets it: every process up, a device registered, a push received."""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo for every test here, started once per run: booting it (migrations, four
    processes, the simulator's ramp-up) is most of what these tests cost, and what each
    checks only accumulates. Module-scoped, so it stops before the next module's tests."""
    tmp_path = tmp_path_factory.mktemp("demo")
    port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "TASK_BACKEND": "database",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    log = open(tmp_path / "demo.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def printed():
            log.seek(0)
            text = log.read()
            return text if "Server key:" in text else None

        text = wait_until(printed, 60, "the demo's welcome")
        keys = dict(re.findall(r"(App key|Server key):\s+(\S+)", text))
        wait_until(lambda: requests.get(f"{base}/api/schema/", timeout=2).ok, 60, "the web server")
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{sandbox_port}/status", timeout=2).ok, 60, "the sandbox"
        )
        yield {
            "base": base,
            "sandbox": f"http://127.0.0.1:{sandbox_port}",
            **keys,
            "process": process,
            "database": tmp_path / "demo.sqlite3",
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            log.seek(0)
            print(log.read()[-5000:])


def test_the_demo_registers_a_device_delivers_a_push_and_rotates_the_token(demo):
    base, app_key = demo["base"], demo["App key"]
    event = {
        "tenant_id": "demo",
        "api_key": app_key,
        "app_user_id": "user_123",
        "event_name": "app_opened",
        "event_time": "2026-11-23T10:15:00+03:00",
        "device_token": "demo-token-1",
        "platform": "android",
        "push_permission_granted": True,
        "timezone": "Europe/Istanbul",
        "language": "tr",
        "country": "TR",
        "session_id": "sess-1",
    }

    registered = requests.post(f"{base}/events", json=event, timeout=10)
    pushed = requests.post(
        f"{base}/developer/push",
        headers={"X-Server-Key": demo["Server key"]},
        json={"app_user_id": "user_123", "title": "Hello", "body": "From Herald"},
        timeout=10,
    )

    assert registered.status_code == 200 and "fingerprint" in registered.json()
    assert pushed.status_code == 201
    assert pushed.json() == {"push_count": 1, "app_user_id": "user_123", "app_id": "demo"}

    def received():
        body = requests.get(f"{demo['sandbox']}/inbox.json", params={"token": "demo-token-1"}, timeout=5)
        return body.json()["messages"] if body.ok and body.json().get("messages") else None

    [push] = wait_until(received, 60, "the worker to deliver the push to the sandbox")
    assert push["message"]["data"]["title"] == "Hello"
    opened = requests.post(
        f"{base}/pushes/opened",
        timeout=10,
        json={
            "tenant_id": "demo",
            "api_key": app_key,
            "tracking_token": push["message"]["data"]["tracking_token"],
        },
    )
    assert opened.json() == {"success": True}

    rotated = requests.post(
        f"{base}/devices/refresh-token",
        timeout=10,
        json={
            "tenant_id": "demo",
            "api_key": app_key,
            "old_token": "demo-token-1",
            "new_token": "demo-token-2",
            "platform": "android",
        },
    )
    assert rotated.json() == {"success": True}
    assert requests.get(f"{base}/admin/login/", timeout=5).status_code == 200


def test_the_demos_virtual_devices_fill_the_dashboard_within_a_minute(demo):
    def count(sql):
        with sqlite3.connect(demo["database"], timeout=10) as db:
            return db.execute(sql).fetchone()[0]

    def alive():
        return (
            count("SELECT COUNT(*) FROM devices_device") >= 20
            and count("SELECT COUNT(*) FROM devices_tokenrotation") >= 1
            and count("SELECT COUNT(*) FROM messaging_delivery WHERE status = 'sent'") >= 1
            and count("SELECT COALESCE(SUM(opened_count), 0) FROM messaging_message") >= 1
        )

    wait_until(alive, 60, "devices, rotations, deliveries and opens from the simulator")


def test_the_demos_help_names_its_ports_and_their_defaults():
    from django.core.management import get_commands, load_command_class

    text = " ".join(
        load_command_class(get_commands()["demo"], "demo")
        .create_parser("manage.py", "demo")
        .format_help()
        .split()
    )

    assert "--port PORT Herald's web port (default 8000" in text
    assert "--sandbox-port SANDBOX_PORT the FCM sandbox's port (default 9099)" in text


def test_make_demo_passes_args_on_to_the_demo():
    dry_run = subprocess.run(
        ["make", "-n", "demo", "ARGS=--port 8001 --sandbox-port 9199"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    assert "manage.py demo --port 8001 --sandbox-port 9199" in dry_run.stdout


def test_the_demo_ships_an_active_cart_reminder_a_local_digest_and_a_weekly_ab_campaign(demo):
    with sqlite3.connect(demo["database"], timeout=10) as db:
        rows = db.execute(
            "SELECT name, kind, status, trigger_event, cancel_event, delay_seconds, schedule_kind, "
            "zone_mode, content_mode FROM campaigns_campaign ORDER BY name"
        ).fetchall()

    assert rows == [
        (
            "Cart abandoned, no purchase within 2 minutes",
            "triggered",
            "active",
            "cart_add",
            "purchase",
            120,
            "",
            "global",
            "rotate",
        ),
        ("Daily digest (local time)", "scheduled", "active", "", "", 0, "daily", "local", "rotate"),
        ("Weekly deals (A/B)", "scheduled", "active", "", "", 0, "weekly", "global", "ab_test"),
    ]
