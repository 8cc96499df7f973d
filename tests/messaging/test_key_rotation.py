"""Rotating SECRET_KEY (or HERALD_ENCRYPTION_KEYS) keeps stored Firebase credentials working.

A stored private key is encrypted with a key derived from SECRET_KEY (or the first of
HERALD_ENCRYPTION_KEYS). A rotation keeps the old key in SECRET_KEY_FALLBACKS until
`reencrypt_fcm_credentials` has run; a key dropped too early is an operator's mistake Herald
names plainly, and the pushes it holds up wait for the key to come back instead of failing.
"""

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from messaging.fcm import forget_clients
from messaging.models import Message
from messaging.services import recover_stalled

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "rotation-key-a-" + "a" * 40
KEY_B = "rotation-key-b-" + "b" * 40


def send(server):
    response = server.post("/api/v1/messages", {"title": "Sale", "body": "50% off"}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def restart():
    """What a deploy does after changing keys: every process builds its FCM clients anew."""
    forget_clients()


def settings_in_a_new_process(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings", **env)
    code = "from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secret_key_fallbacks_are_read_from_the_environment():
    done = settings_in_a_new_process(SECRET_KEY=KEY_B, SECRET_KEY_FALLBACKS=f"{KEY_A},older-key")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str([KEY_A, "older-key"])


def test_herald_refuses_to_start_with_the_repositorys_secret_key_when_debug_is_off():
    refused = settings_in_a_new_process(DEBUG="false")
    in_development = settings_in_a_new_process(DEBUG="true")

    assert refused.returncode != 0
    assert "SECRET_KEY is the repository's public development key" in refused.stderr
    assert in_development.returncode == 0, in_development.stderr


def test_a_secret_key_rotation_keeps_every_send_working(
    sandbox, server, tenant, make_device, inbox, settings, sandbox_private_key
):
    from fcm_sandbox.accounts import provision_tenant

    settings.HERALD_ENCRYPTION_KEYS = []
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = KEY_A, []
    provision_tenant(tenant=tenant, sandbox_url=sandbox.url, private_key_pem=sandbox_private_key)
    make_device("tok-a")
    assert send(server).deliveries.get().status == "sent"

    # Rotate: the new key signs and encrypts, the old one still decrypts.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = KEY_B, [KEY_A]
    restart()
    assert send(server).deliveries.get().status == "sent"

    call_command("reencrypt_fcm_credentials", verbosity=0)
    settings.SECRET_KEY_FALLBACKS = []  # the old key is gone for good
    restart()
    assert send(server).deliveries.get().status == "sent"
    assert len(inbox()["tok-a"]) == 3


def test_a_key_dropped_too_early_holds_pushes_back_until_it_returns_never_fails_them(
    sandbox, server, tenant, make_device, inbox, settings, sandbox_private_key, admin_user, caplog
):
    from fcm_sandbox.accounts import provision_tenant

    settings.HERALD_ENCRYPTION_KEYS = []
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = KEY_A, []
    credential, _ = provision_tenant(
        tenant=tenant, sandbox_url=sandbox.url, private_key_pem=sandbox_private_key
    )
    make_device("tok-a")
    settings.SECRET_KEY = KEY_B  # rotated without keeping KEY_A
    restart()

    with caplog.at_level(logging.ERROR, logger="herald.delivery"):
        message = send(server)

    message.refresh_from_db()
    delivery = message.deliveries.get()
    assert message.status == "sending"
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("pending", 0, "CONFIGURATION")
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=30)
    assert "cannot be decrypted" in caplog.text and "SECRET_KEY_FALLBACKS" in caplog.text
    admin_client = Client()
    admin_client.force_login(admin_user)  # signed in after the rotation: a session of KEY_B
    page = admin_client.get(f"/admin/tenants/firebasecredential/{credential.pk}/change/").content.decode()
    assert "Cannot be decrypted." in page

    settings.SECRET_KEY_FALLBACKS = [KEY_A]  # the operator brings the old key back
    message.deliveries.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    recover_stalled()

    message.refresh_from_db()
    assert message.deliveries.get().status == "sent"
    assert message.status == "completed"
    assert len(inbox()["tok-a"]) == 1
    page = admin_client.get(f"/admin/tenants/firebasecredential/{credential.pk}/change/").content.decode()
    assert "Cannot be decrypted." not in page
