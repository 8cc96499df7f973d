"""The FCM sandbox speaks Google's protocol: OAuth token endpoint, messages:send, inbox."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.core.management import call_command
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from fcm_sandbox import schema
from fcm_sandbox.accounts import generate_private_key_pem
from fcm_sandbox.models import SandboxMessage, SandboxServiceAccount
from tenants.models import FirebaseCredential, Tenant

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
UPSTREAM_SHA256 = "5af8eff795b9c5c29a250494e4996980ccc982938c863109d614389a591aa3f9"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(account: dict, *, key_pem: str | None = None, alg="RS256", **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": account["client_email"],
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "scope": SCOPE,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    header = {"alg": alg, "typ": "JWT", "kid": account["private_key_id"]}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    key = serialization.load_pem_private_key((key_pem or account["private_key"]).encode(), password=None)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def ask_for_token(sandbox, assertion, grant_type=JWT_BEARER):
    return requests.post(
        sandbox.token_url, data={"grant_type": grant_type, "assertion": assertion}, timeout=5
    )


@pytest.fixture
def bearer(fcm_sandbox, sandbox_service_account) -> str:
    response = ask_for_token(fcm_sandbox, signed_jwt(sandbox_service_account))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
def send(fcm_sandbox, bearer):
    """POST a body to messages:send of project herald-test; returns the response."""

    def send(body, *, project="herald-test", token=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            f"{fcm_sandbox.url}/v1/projects/{project}/messages:send",
            data=raw,
            headers={"Authorization": f"Bearer {token or bearer}", "Content-Type": "application/json"},
            timeout=10,
        )

    return send


def error_of(response) -> dict:
    return response.json()["error"]


# --- The discovery document ---------------------------------------------------------------


def test_the_discovery_document_is_googles_byte_for_byte():
    raw = schema.DISCOVERY_DOCUMENT.read_bytes()

    assert hashlib.sha256(raw).hexdigest() == UPSTREAM_SHA256
    assert json.loads(raw)["revision"] == "20261023"
    shared = Path("/work/shared/reference/fcm.v1.json")
    if shared.exists():
        assert shared.read_bytes() == raw


# --- OAuth token endpoint ------------------------------------------------------------------


def test_the_token_endpoint_trades_a_signed_jwt_for_a_bearer_token(fcm_sandbox, sandbox_service_account):
    response = ask_for_token(fcm_sandbox, signed_jwt(sandbox_service_account))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("ya29.")


def test_the_token_endpoint_accepts_its_own_url_as_audience(fcm_sandbox, sandbox_service_account):
    response = ask_for_token(fcm_sandbox, signed_jwt(sandbox_service_account, aud=fcm_sandbox.token_url))

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"aud": "https://example.com/token"}, "invalid_grant", "Failed audience check"),
        (
            {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
            "invalid_grant",
            "short-lived token",
        ),
        ({"exp": int(time.time()) + 7200}, "invalid_grant", "short-lived token"),
        (
            {"scope": "https://www.googleapis.com/auth/devstorage.read_only"},
            "invalid_scope",
            "Invalid OAuth scope",
        ),
        ({"scope": None}, "invalid_scope", "Invalid OAuth scope"),
        ({"iss": "stranger@example.iam.gserviceaccount.com"}, "invalid_grant", "account not found"),
    ],
)
def test_the_token_endpoint_checks_every_claim(
    fcm_sandbox, sandbox_service_account, claims, error, description
):
    response = ask_for_token(fcm_sandbox, signed_jwt(sandbox_service_account, **claims))

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert description in response.json()["error_description"]


def test_the_token_endpoint_checks_the_signature(fcm_sandbox, sandbox_service_account):
    forged = signed_jwt(sandbox_service_account, key_pem=generate_private_key_pem())

    response = ask_for_token(fcm_sandbox, forged)

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}


def test_the_token_endpoint_wants_the_jwt_bearer_grant(fcm_sandbox, sandbox_service_account):
    response = ask_for_token(
        fcm_sandbox, signed_jwt(sandbox_service_account), grant_type="client_credentials"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_the_token_endpoint_refuses_garbage(fcm_sandbox):
    assert ask_for_token(fcm_sandbox, "not.a.jwt").json()["error"] == "invalid_grant"
    assert ask_for_token(fcm_sandbox, "").json()["error"] == "invalid_request"


# --- Authentication of sends ---------------------------------------------------------------


def test_a_send_without_a_bearer_token_is_unauthenticated(fcm_sandbox):
    response = requests.post(
        f"{fcm_sandbox.url}/v1/projects/herald-test/messages:send",
        json={"message": {"token": "t"}},
        timeout=5,
    )

    assert response.status_code == 401
    error = error_of(response)
    assert (error["code"], error["status"]) == (401, "UNAUTHENTICATED")
    assert error["message"].startswith("Request is missing required authentication credential.")
    assert error["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_a_send_with_an_unknown_token_is_unauthenticated(send):
    response = send({"message": {"token": "t"}}, token="ya29.made-up")

    assert response.status_code == 401
    assert error_of(response)["message"].startswith("Request had invalid authentication credentials.")


def test_a_send_with_an_expired_token_is_unauthenticated(fcm_sandbox, sandbox_service_account):
    fcm_sandbox.state.configure(token_lifetime=0)
    token = ask_for_token(fcm_sandbox, signed_jwt(sandbox_service_account)).json()["access_token"]

    response = requests.post(
        f"{fcm_sandbox.url}/v1/projects/herald-test/messages:send",
        json={"message": {"token": "t"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )

    assert response.status_code == 401
    assert error_of(response)["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


def test_a_token_only_sends_for_its_own_project(send):
    response = send({"message": {"token": "t"}}, project="someone-elses-project")

    assert response.status_code == 403
    error = error_of(response)
    assert error["status"] == "PERMISSION_DENIED"
    assert "cloudmessaging.messages.create" in error["message"]


# --- Google's answers ------------------------------------------------------------------------


def test_a_send_answers_with_the_message_name_only(send):
    response = send({"message": {"token": "device-1", "data": {"a": "b"}}})

    assert response.status_code == 200
    assert set(response.json()) == {"name"}
    assert re.fullmatch(r"projects/herald-test/messages/0:\d+%[0-9a-f]{16}", response.json()["name"])


def test_an_unregistered_token_gets_googles_exact_error_body(send):
    response = send({"message": {"token": "sandbox-unregistered-1"}})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
            ],
        }
    }


def test_quota_exceeded_says_when_to_retry(send):
    response = send({"message": {"token": "sandbox-quota-5"}})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    assert error_of(response)["status"] == "RESOURCE_EXHAUSTED"
    assert error_of(response)["details"][0]["errorCode"] == "QUOTA_EXCEEDED"


def test_validate_only_is_accepted_in_both_spellings(send):
    for flag in ("validate_only", "validateOnly"):
        response = send({"message": {"token": "device-1"}, flag: True})
        assert response.json() == {"name": "projects/herald-test/messages/fake_message_id"}
    assert not SandboxMessage.objects.exists()


# --- The schema -------------------------------------------------------------------------------


def test_snake_case_and_camel_case_field_names_are_both_accepted(send):
    snake = {
        "token": "d",
        "fcm_options": {"analytics_label": "a"},
        "android": {"collapse_key": "c", "notification": {"channel_id": "x", "notification_count": "3"}},
        "apns": {"fcm_options": {"analytics_label": "a"}, "payload": {"aps": {"content-available": 1}}},
        "webpush": {"fcm_options": {"link": "https://example.com"}},
    }
    camel = {
        "token": "d",
        "fcmOptions": {"analyticsLabel": "a"},
        "android": {"collapseKey": "c", "notification": {"channelId": "x", "notificationCount": 3}},
        "webpush": {"fcmOptions": {"link": "https://example.com"}},
    }

    assert send({"message": snake}).status_code == 200
    assert send({"message": camel}).status_code == 200
    stored = SandboxMessage.objects.order_by("id").first()
    assert stored.message["android"]["notification"] == {"channelId": "x", "notificationCount": 3}


def test_an_unknown_field_is_rejected_as_google_does(send):
    response = send({"message": {"token": "d", "priority": "high"}})

    assert response.status_code == 400
    text = "Invalid JSON payload received. Unknown name \"priority\" at 'message': Cannot find field."
    assert response.json() == {
        "error": {
            "code": 400,
            "message": text,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message", "description": text}],
                }
            ],
        }
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"token": "d", "android": {"notification": {"colour": "#fff"}}},
            "Unknown name \"colour\" at 'message.android.notification'",
        ),
        ({"token": "d", "data": {"count": 3}}, "Invalid value at 'message.data[0].value' (TYPE_STRING), 3"),
        ({"token": "d", "android": {"priority": "URGENT"}}, "Invalid value at 'message.android.priority'"),
        ({"token": "d", "android": {"ttl": "3600"}}, "Illegal duration format"),
        ({"token": 42}, "Invalid value at 'message.token' (TYPE_STRING), 42"),
        ({"token": "d", "topic": "news"}, "Oneof field 'target' is already set. Cannot set 'topic'"),
        ({"token": "d", "android": {"direct_boot_ok": "yes"}}, "(TYPE_BOOL)"),
        ({"token": "d", "android": {"notification": {"notification_count": 2**40}}}, "(TYPE_INT32)"),
        ({"token": "d", "notification": "hello"}, "google.firebase.fcm.v1.Notification"),
    ],
)
def test_what_does_not_fit_the_schema_is_rejected(send, message, expected):
    response = send({"message": message})

    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert expected in error["message"]
    # A parse error, not an FCM one: Google's parser answers before FCM sees the message.
    assert [d["@type"] for d in error["details"]] == ["type.googleapis.com/google.rpc.BadRequest"]


def test_an_unknown_top_level_field_is_rejected(send):
    response = send({"message": {"token": "d"}, "dry_run": True})

    assert 'Unknown name "dry_run": Cannot find field.' in error_of(response)["message"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"data": {"a": "b"}}, "Recipient of the message is not set."),
        ({"token": "d", "android": {}, "android_v2": {}}, "cannot be set at the same time"),
        ({"token": "d", "data": {"from": "me"}}, "reserved"),
        ({"token": "d", "data": {"google.x": "y"}}, "reserved"),
        ({"token": "d", "data": {"big": "x" * 4094}}, "Message is too big"),
        ({"token": "d", "notification": {"title": "t" * 2000, "body": "b" * 2100}}, "Message is too big"),
        ({"topic": "/topics/news"}, "Invalid topic name"),
        ({"condition": "news in topics"}, "Invalid condition"),
        ({"token": "d", "android": {"ttl": "2419201s"}}, "TTL must be between 0 and 4 weeks"),
        ({"token": "d", "fcm_options": {"analytics_label": "has spaces"}}, "Analytics label"),
        ({"token": "d", "webpush": {"fcm_options": {"link": "http://example.com"}}}, "HTTPS"),
        ({"token": "  "}, "not a valid FCM registration token"),
    ],
)
def test_what_fcm_cannot_send_is_an_invalid_argument(send, message, expected):
    response = send({"message": message})

    assert response.status_code == 400
    error = error_of(response)
    assert expected in error["message"]
    assert error["details"][0] == {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "INVALID_ARGUMENT",
    }


def test_a_payload_of_exactly_4096_bytes_is_accepted(send):
    response = send({"message": {"token": "d", "data": {"k": "x" * 4095}}})

    assert response.status_code == 200


def test_null_fields_count_as_not_set(send):
    response = send({"message": {"token": "d", "topic": None, "notification": None}})

    assert response.status_code == 200


def test_a_missing_message_and_broken_json_are_rejected(send):
    assert send({"validate_only": True}).status_code == 400
    assert send(b"{not json").status_code == 400
    assert send(b"[]").status_code == 400


# --- Global knobs ----------------------------------------------------------------------------


def test_added_latency_delays_every_send(fcm_sandbox, send):
    fcm_sandbox.state.settings.latency_ms = 150

    started = time.monotonic()
    send({"message": {"token": "d"}})

    assert time.monotonic() - started >= 0.15


def test_a_failure_rate_of_one_fails_every_send_with_a_retryable_error(fcm_sandbox, send):
    fcm_sandbox.state.settings.failure_rate = 1.0

    statuses = {send({"message": {"token": "d"}}).status_code for _ in range(10)}

    assert statuses <= {500, 503}
    assert not SandboxMessage.objects.exists()


# --- The virtual device ------------------------------------------------------------------------


def test_the_inbox_json_lists_what_a_token_received_oldest_first(fcm_sandbox, send):
    for i in range(3):
        send({"message": {"token": "phone-1", "data": {"title": f"Hello {i}", "body": "b", "n": str(i)}}})
    send({"message": {"token": "phone-2", "notification": {"title": "Other", "body": "b"}}})

    response = requests.get(f"{fcm_sandbox.url}/inbox.json", params={"token": "phone-1"}, timeout=5)

    messages = response.json()["messages"]
    assert [m["title"] for m in messages] == ["Hello 0", "Hello 1", "Hello 2"]
    assert messages[0]["data"] == {"title": "Hello 0", "body": "b", "n": "0"}
    assert messages[0]["data_only"] is True
    later = requests.get(
        f"{fcm_sandbox.url}/inbox.json", params={"token": "phone-1", "after": messages[1]["id"]}, timeout=5
    ).json()["messages"]
    assert [m["title"] for m in later] == ["Hello 2"]


def test_the_inbox_json_needs_a_token(fcm_sandbox):
    assert requests.get(f"{fcm_sandbox.url}/inbox.json", timeout=5).status_code == 400


def test_the_inbox_page_shows_notifications_like_a_phone(fcm_sandbox, send):
    send({"message": {"token": "phone-1", "notification": {"title": "Big sale", "body": "50% off today"}}})
    send({"message": {"token": "phone-2", "data": {"title": "Secret", "body": "not for phone 1"}}})

    page = requests.get(f"{fcm_sandbox.url}/", params={"token": "phone-1"}, timeout=5).text

    assert "Big sale" in page and "50% off today" in page
    assert "Secret" not in page
    assert "phone-2" in page  # in the list of recent targets


def test_an_unknown_path_is_a_json_404(fcm_sandbox):
    response = requests.get(f"{fcm_sandbox.url}/v1/nothing", timeout=5)

    assert response.status_code == 404
    assert error_of(response)["status"] == "NOT_FOUND"


# --- Faithful to Google's own client ------------------------------------------------------------


def test_google_auths_authorized_session_gets_a_token_and_sends_through_the_sandbox(
    fcm_sandbox, sandbox_service_account
):
    credentials = service_account.Credentials.from_service_account_info(
        sandbox_service_account, scopes=["https://www.googleapis.com/auth/firebase.messaging"]
    )
    session = AuthorizedSession(credentials)
    try:
        response = session.post(
            f"{fcm_sandbox.url}/v1/projects/herald-test/messages:send",
            json={
                "message": {
                    "token": "google-auth-device",
                    "notification": {"title": "Hi", "body": "there"},
                    "android": {"priority": "HIGH", "ttl": "60s"},
                }
            },
            timeout=10,
        )
        again = session.post(
            f"{fcm_sandbox.url}/v1/projects/herald-test/messages:send",
            json={"message": {"token": "google-auth-device", "data": {"n": "2"}}},
            timeout=10,
        )
    finally:
        session.close()

    assert response.status_code == 200, response.text
    assert again.status_code == 200
    assert credentials.valid and credentials.token.startswith("ya29.")
    assert fcm_sandbox.state.token_requests == 1
    assert SandboxMessage.objects.filter(target="google-auth-device").count() == 2


# --- Commands -------------------------------------------------------------------------------------


def test_sandbox_credentials_gives_a_tenant_a_key_the_sandbox_trusts(fcm_sandbox, capsys, settings):
    from messaging.services import client_for_tenant

    tenant = Tenant.objects.create(name="Demo", tenant_id="demo")

    call_command("sandbox_credentials", "demo", "--url", fcm_sandbox.url)

    credential = FirebaseCredential.objects.get(tenant=tenant)
    assert credential.token_uri == f"{fcm_sandbox.url}/token"
    assert credential.project_id == "sandbox-demo"
    assert SandboxServiceAccount.objects.filter(
        client_email=credential.client_email, key_id=credential.private_key_id
    ).exists()
    assert "sandbox-demo" in capsys.readouterr().out
    name = client_for_tenant(tenant).send({"token": "demo-device", "data": {"title": "hi"}})
    assert name.startswith("projects/sandbox-demo/messages/")


def test_the_fcm_sandbox_command_serves_on_the_given_port(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'sandbox.sqlite3'}"}
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    process = subprocess.Popen(
        [sys.executable, str(manage), "fcm_sandbox", "--port", str(port), "--quiet", "--latency-ms", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert f"FCM sandbox on http://127.0.0.1:{port}" in process.stdout.readline()
        deadline = time.monotonic() + 10
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/token", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 405
        assert response.json()["error"] == "invalid_request"
    finally:
        process.terminate()
        process.wait(timeout=10)
