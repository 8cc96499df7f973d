"""firebase-admin's messaging.send_each against a fake FCM: the yardstick Herald is measured by.

firebase-admin is never a dependency of Herald: it lives in its own venv,
bench/.venv-yardstick, which `ensure_venv()` makes on first use. This file is both the
library that runs it and (with `run`) the script that runs inside that venv. Over TLS (the
nginx fake) it trusts REQUESTS_CA_BUNDLE, which the caller sets.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-yardstick"
PYTHON = VENV / "bin" / "python"


def ensure_venv() -> Path | None:
    """The yardstick venv's python, or None if firebase-admin cannot be installed here."""
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    ok = subprocess.run([str(PYTHON), "-c", "import firebase_admin"], capture_output=True).returncode == 0
    if not ok:
        done = subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "-q", "firebase-admin"], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"firebase-admin could not be installed: {done.stderr[-500:]}", file=sys.stderr)
            return None
    return PYTHON


def measure(*, service_account: dict, fcm_url: str, count: int, batch: int = 500) -> dict | None:
    """Send `count` messages with send_each in batches; returns msgs/s and CPU ms/msg."""
    python = ensure_venv()
    if python is None:
        return None
    done = subprocess.run(
        [str(python), __file__, "run", json.dumps(service_account), fcm_url, str(count), str(batch)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run(service_account: str, fcm_url: str, count: int, batch: int) -> None:
    import firebase_admin
    from firebase_admin import credentials, messaging

    # firebase-admin hard-codes Google's host; point it (and nothing else) at the fake.
    messaging._MessagingService.FCM_URL = fcm_url + "/v1/projects/{0}/messages:send"
    info = json.loads(service_account)
    app = firebase_admin.initialize_app(credentials.Certificate(info), {"projectId": info["project_id"]})
    # firebase-admin mounts a pool of 100 connections for Google's host only: give the fake
    # the same, or over TLS most of send_each's 500 threads would open a connection a send.
    import requests
    from firebase_admin import _http_client

    service = messaging._get_messaging_service(app)
    service._client.session.mount(
        fcm_url,
        requests.adapters.HTTPAdapter(
            pool_connections=100, pool_maxsize=100, max_retries=_http_client.DEFAULT_RETRY_CONFIG
        ),
    )
    messages = [
        messaging.Message(
            token=f"token-{i}", data={"title": "Hi", "body": "There", "tracking_token": f"t{i}"}
        )
        for i in range(count)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    failures = 0
    for start in range(0, count, batch):
        response = messaging.send_each(messages[start : start + batch], app=app)
        failures += response.failure_count
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "messages": count,
                "failures": failures,
                "seconds": wall,
                "msgs_per_s": count / wall,
                "cpu_ms_per_msg": 1000 * cpu / count,
            }
        )
    )


if __name__ == "__main__" and sys.argv[1:2] == ["run"]:
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "bench")
    _run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
