"""messaging.fcm against the sandbox, over real HTTP on a local port."""

import json
import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import time_machine
import urllib3
from django.core.management import CommandError, call_command

from fcm_sandbox.accounts import create_service_account
from fcm_sandbox.models import SandboxMessage
from messaging import fcm
from messaging.fcm import FcmClient, FcmError, FcmTarget, build_message
from messaging.services import check_credentials, client_for_tenant
from tenants.credentials import set_credentials
from tenants.models import FirebaseCredential


def message(token="device-token-1", **options):
    return build_message(
        target=FcmTarget(token=token), title="Hello", body="World", data={"k": "v"}, **options
    )


def connections_opened(client: FcmClient) -> int:
    """TCP connections the client's send pool has opened so far."""
    return client._http.connection_from_url(client.send_url).num_connections


@pytest.fixture
def fcm_client(sandbox_service_account, fcm_sandbox):
    client = FcmClient(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url, timeout=5)
    yield client
    client.close()


# --- Sending -------------------------------------------------------------------------


def test_it_sends_a_message_and_returns_its_name(fcm_client, fcm_sandbox):
    name = fcm_client.send(message())

    assert name.startswith("projects/herald-test/messages/")
    stored = SandboxMessage.objects.get()
    assert stored.name == name
    assert stored.target == "device-token-1"
    assert (stored.title, stored.body) == ("Hello", "World")
    assert stored.message["data"] == {"k": "v", "title": "Hello", "body": "World"}


def test_validate_only_checks_a_message_without_delivering_it(fcm_client):
    name = fcm_client.send(message(), validate_only=True)

    assert name == "projects/herald-test/messages/fake_message_id"
    assert not SandboxMessage.objects.exists()


def test_validate_only_still_reports_an_invalid_message(fcm_client):
    with pytest.raises(FcmError) as caught:
        fcm_client.send({"token": "t", "data": {"count": 3}}, validate_only=True)

    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.permanent


def test_it_sends_every_message_over_one_keep_alive_connection(fcm_client):
    for _ in range(30):
        fcm_client.send(message())

    assert connections_opened(fcm_client) == 1


# --- Access tokens -----------------------------------------------------------------------


def test_it_fetches_one_access_token_for_many_sends(fcm_client, fcm_sandbox):
    for _ in range(50):
        fcm_client.send(message())

    assert fcm_client.token_fetches == 1
    assert fcm_sandbox.state.token_requests == 1
    assert fcm_sandbox.state.send_requests == 50


def test_it_shares_one_access_token_across_threads(fcm_client, fcm_sandbox):
    start = threading.Barrier(16)

    def send_many(_):
        start.wait()  # every thread asks for a token at the same moment
        return [fcm_client.send(message()) for _ in range(10)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        names = [name for batch in pool.map(send_many, range(16)) for name in batch]

    assert len(set(names)) == 160
    assert fcm_sandbox.state.token_requests == 1
    assert fcm_client.token_fetches == 1


def test_it_refreshes_the_token_shortly_before_it_expires(sandbox_service_account, fcm_sandbox):
    # google-auth treats a token as expired 3m45s (225 s) early: a 226-second token is
    # good for one second.
    fcm_sandbox.state.configure(token_lifetime=226)
    client = FcmClient(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url)
    client.send(message())
    client.send(message())
    assert fcm_sandbox.state.token_requests == 1

    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=2)):
        client.send(message())

    assert fcm_sandbox.state.token_requests == 2
    client.close()


def test_it_fetches_a_new_token_once_when_fcm_rejects_the_old_one(fcm_client, fcm_sandbox):
    fcm_client.send(message())
    fcm_sandbox.state.revoke_access_tokens()  # as when the sandbox restarts

    name = fcm_client.send(message())

    assert name.startswith("projects/herald-test/messages/")
    assert fcm_sandbox.state.token_requests == 2
    assert fcm_sandbox.state.send_requests == 3


def test_threads_rejected_together_share_one_new_token(fcm_client, fcm_sandbox):
    fcm_client.send(message())
    fcm_sandbox.state.revoke_access_tokens()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: fcm_client.send(message()), range(8)))

    assert fcm_sandbox.state.token_requests == 2


def test_it_gives_up_when_a_fresh_token_is_rejected_too(sandbox_service_account, fcm_sandbox):
    fcm_sandbox.state.configure(token_lifetime=0)  # every token is expired on arrival
    client = FcmClient(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url)

    with pytest.raises(FcmError) as caught:
        client.send(message())

    assert caught.value.code == "UNAUTHENTICATED"
    assert caught.value.status == 401
    assert caught.value.permanent
    assert fcm_sandbox.state.token_requests == 2  # the first token, and one retry
    client.close()


def test_a_key_google_does_not_know_is_a_permanent_error(fcm_sandbox, sandbox_service_account):
    from fcm_sandbox.accounts import generate_private_key_pem

    forged = {**sandbox_service_account, "private_key": generate_private_key_pem()}
    client = FcmClient(service_account_info=forged, api_url=fcm_sandbox.url)

    with pytest.raises(FcmError) as caught:
        client.send(message())

    assert caught.value.code == "UNAUTHENTICATED"
    assert caught.value.permanent
    assert "Invalid JWT Signature" in caught.value.detail
    assert fcm_sandbox.state.send_requests == 0


def test_fcm_token_url_overrides_the_token_uri_of_the_key(sandbox_service_account, fcm_sandbox, settings):
    settings.FCM_TOKEN_URL = fcm_sandbox.token_url
    elsewhere = {**sandbox_service_account, "token_uri": "https://oauth2.googleapis.com/token"}
    client = FcmClient(service_account_info=elsewhere, api_url=fcm_sandbox.url)

    assert client.send(message())
    assert client.token_uri == fcm_sandbox.token_url
    client.close()


# --- Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "code", "status", "permanent", "unregistered", "retry_after"),
    [
        ("sandbox-unregistered-1", "UNREGISTERED", 404, True, True, None),
        ("sandbox-sender-mismatch-1", "SENDER_ID_MISMATCH", 403, True, True, None),
        ("sandbox-invalid-1", "INVALID_ARGUMENT", 400, True, False, None),
        ("sandbox-quota-x", "QUOTA_EXCEEDED", 429, False, False, 60.0),
        ("sandbox-quota-7-abc", "QUOTA_EXCEEDED", 429, False, False, 7.0),
        ("sandbox-unavailable-1", "UNAVAILABLE", 503, False, False, 30.0),
        ("sandbox-internal-1", "INTERNAL", 500, False, False, None),
        ("sandbox-third-party-auth-1", "THIRD_PARTY_AUTH_ERROR", 401, True, False, None),
    ],
)
def test_it_turns_each_fcm_error_into_an_fcm_error(
    fcm_client, fcm_sandbox, token, code, status, permanent, unregistered, retry_after
):
    with pytest.raises(FcmError) as caught:
        fcm_client.send(message(token))

    error = caught.value
    assert (error.code, error.status, error.permanent, error.unregistered, error.retry_after) == (
        code,
        status,
        permanent,
        unregistered,
        retry_after,
    )
    assert error.detail
    # A third-party auth error is not about our token: no new token is fetched.
    assert fcm_sandbox.state.token_requests == 1


def test_unavailable_once_succeeds_when_tried_again(fcm_client):
    with pytest.raises(FcmError) as caught:
        fcm_client.send(message("sandbox-unavailable-once-42"))
    assert caught.value.code == "UNAVAILABLE" and not caught.value.permanent

    assert fcm_client.send(message("sandbox-unavailable-once-42"))


def test_a_slow_fcm_is_a_retryable_timeout(sandbox_service_account, fcm_sandbox):
    client = FcmClient(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url, timeout=0.3)
    client.access_token()  # so that the timeout is the send's, not the token's

    started = time.monotonic()
    with pytest.raises(FcmError) as caught:
        client.send(message("sandbox-slow-1000"))

    assert time.monotonic() - started < 0.9
    assert (caught.value.code, caught.value.status, caught.value.permanent) == ("TIMEOUT", None, False)
    client.close()


def test_an_unreachable_fcm_is_a_retryable_connection_error(sandbox_service_account, fcm_sandbox):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    client = FcmClient(
        service_account_info=sandbox_service_account, api_url=f"http://127.0.0.1:{closed_port}"
    )

    with pytest.raises(FcmError) as caught:
        client.send(message())

    assert (caught.value.code, caught.value.status, caught.value.permanent) == (
        "CONNECTION_ERROR",
        None,
        False,
    )
    client.close()


def test_an_unreachable_token_endpoint_is_a_retryable_connection_error(
    sandbox_service_account, fcm_sandbox, settings
):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    info = {**sandbox_service_account, "token_uri": f"http://127.0.0.1:{closed_port}/token"}
    settings.FCM_ALLOWED_TOKEN_URIS = [info["token_uri"]]
    client = FcmClient(service_account_info=info, api_url=fcm_sandbox.url)

    with pytest.raises(FcmError) as caught:
        client.send(message())

    assert caught.value.code == "CONNECTION_ERROR" and not caught.value.permanent
    client.close()


def fake_response(status, body=None, headers=None) -> urllib3.HTTPResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
    return urllib3.HTTPResponse(body=raw, status=status, headers=headers or {}, preload_content=True)


@pytest.mark.parametrize(
    ("status", "body", "code", "permanent", "unregistered"),
    [
        (
            404,
            {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}},
            "NOT_FOUND",
            True,
            False,
        ),
        (
            403,
            {"error": {"code": 403, "message": "No", "status": "PERMISSION_DENIED"}},
            "PERMISSION_DENIED",
            True,
            False,
        ),
        (
            401,
            {"error": {"code": 401, "message": "No", "status": "UNAUTHENTICATED"}},
            "UNAUTHENTICATED",
            True,
            False,
        ),
        (429, None, "QUOTA_EXCEEDED", False, False),
        (502, b"<html>Bad Gateway</html>", "UNAVAILABLE", False, False),
        (503, None, "UNAVAILABLE", False, False),
        (500, b"oops", "INTERNAL", False, False),
        (507, None, "INTERNAL", False, False),
        (413, b"too big", "HTTP_413", True, False),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                            "errorCode": "UNSPECIFIED_ERROR",
                        }
                    ],
                }
            },
            "UNSPECIFIED_ERROR",
            True,
            False,
        ),
    ],
)
def test_without_an_fcm_error_code_the_http_status_decides(status, body, code, permanent, unregistered):
    error = fcm.error_from_response(fake_response(status, body))

    assert (error.code, error.status, error.permanent, error.unregistered) == (
        code,
        status,
        permanent,
        unregistered,
    )


def test_retry_after_may_be_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=120)
    error = fcm.error_from_response(
        fake_response(503, None, {"Retry-After": format_datetime(when, usegmt=True)})
    )

    assert 110 <= error.retry_after <= 120


def test_an_fcm_error_survives_pickling_with_every_field():
    error = FcmError("QUOTA_EXCEEDED", "slow down", status=429, retry_after=61.0)

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.code, copy.detail, copy.status, copy.permanent, copy.retry_after) == (
        "QUOTA_EXCEEDED",
        "slow down",
        429,
        False,
        61.0,
    )


def test_an_fcm_error_can_be_made_with_keywords_only():
    error = FcmError(code="DEVICE_GONE", status=None, permanent=True, retry_after=None, detail="gone")

    assert (error.code, error.permanent, error.unregistered, str(error)) == (
        "DEVICE_GONE",
        True,
        False,
        "DEVICE_GONE: gone",
    )


# --- Building messages ---------------------------------------------------------------------


def test_a_target_names_exactly_one_recipient():
    with pytest.raises(ValueError):
        FcmTarget()
    with pytest.raises(ValueError):
        FcmTarget(token="a", topic="b")
    assert FcmTarget(topic="/topics/news").as_fields() == {"topic": "news"}
    assert FcmTarget(fid="f1").as_fields() == {"fid": "f1"}


def test_a_message_is_data_only_by_default_with_title_and_body_in_data():
    built = build_message(
        target=FcmTarget(token="t"),
        title="Sale",
        body="50% off",
        data={"deep_link": "app://sale"},
        image="https://img.example/a.png",
        click_link="https://shop.example/sale",
    )

    assert "notification" not in built
    assert built["data"] == {
        "deep_link": "app://sale",
        "title": "Sale",
        "body": "50% off",
        "image": "https://img.example/a.png",
        "click_link": "https://shop.example/sale",
    }
    assert built["webpush"]["fcm_options"] == {"link": "https://shop.example/sale"}
    # iOS gets a background push, which Apple wants at priority 5.
    assert built["apns"]["headers"]["apns-push-type"] == "background"
    assert built["apns"]["payload"] == {"aps": {"content-available": 1}}


def test_a_notification_message_lets_the_system_draw_it():
    built = build_message(
        target=FcmTarget(token="t"),
        title="Sale",
        body="50% off",
        data={},
        data_only=False,
        image="https://img.example/a.png",
        android_channel="promo",
        sound="default",
        badge=3,
        analytics_label="sale_2026",
    )

    assert built["notification"] == {"title": "Sale", "body": "50% off", "image": "https://img.example/a.png"}
    assert "data" not in built
    assert built["android"]["notification"] == {
        "channel_id": "promo",
        "sound": "default",
        "notification_count": 3,
    }
    assert built["apns"]["payload"]["aps"] == {"sound": "default", "badge": 3, "mutable-content": 1}
    assert built["apns"]["headers"]["apns-push-type"] == "alert"
    assert built["fcm_options"] == {"analytics_label": "sale_2026"}


@pytest.mark.parametrize(
    ("priority", "android", "apns", "urgency"),
    [
        (1, "NORMAL", "5", "normal"),
        (6, "NORMAL", "5", "normal"),
        (7, "HIGH", "10", "high"),
        (10, "HIGH", "10", "high"),
    ],
)
def test_priority_seven_and_above_is_urgent(priority, android, apns, urgency):
    built = build_message(
        target=FcmTarget(token="t"), title="a", body="b", data={}, priority=priority, data_only=False
    )

    assert built["android"]["priority"] == android
    assert built["apns"]["headers"]["apns-priority"] == apns
    assert built["webpush"]["headers"]["Urgency"] == urgency


def test_ttl_and_collapse_key_reach_every_platform():
    before = int(datetime.now(UTC).timestamp())
    built = build_message(
        target=FcmTarget(token="t"), title="a", body="b", data={}, ttl_seconds=3600, collapse_key="score"
    )

    assert built["android"]["ttl"] == "3600s"
    assert built["android"]["collapse_key"] == "score"
    assert before + 3600 <= int(built["apns"]["headers"]["apns-expiration"]) <= before + 3602
    assert built["apns"]["headers"]["apns-collapse-id"] == "score"
    assert built["webpush"]["headers"]["TTL"] == "3600"


def test_a_click_link_that_is_not_https_stays_in_data_only():
    built = build_message(
        target=FcmTarget(token="t"), title="a", body="b", data={}, click_link="myapp://inbox"
    )

    assert built["data"]["click_link"] == "myapp://inbox"
    assert "fcm_options" not in built["webpush"]


def test_build_message_refuses_what_fcm_would_refuse():
    with pytest.raises(ValueError):
        build_message(target=FcmTarget(token="t"), title="a", body="b", data={}, priority=11)
    with pytest.raises(ValueError):
        build_message(target=FcmTarget(token="t"), title="a", body="b", data={}, ttl_seconds=29 * 24 * 3600)
    with pytest.raises(TypeError):
        build_message(target=FcmTarget(token="t"), title="a", body="b", data={"n": 1})


@pytest.mark.parametrize("data_only", [True, False])
def test_every_option_builds_a_message_the_sandbox_accepts(fcm_client, data_only):
    built = build_message(
        target=FcmTarget(token="t"),
        title="Sale",
        body="50% off",
        data={"k": "v"},
        image="https://i.example/a.png",
        click_link="https://shop.example",
        priority=9,
        ttl_seconds=0,
        collapse_key="c",
        data_only=data_only,
        android_channel="promo",
        sound="default",
        badge=2,
        analytics_label="label-1",
    )

    assert fcm_client.send(built).startswith("projects/herald-test/messages/")


@pytest.mark.parametrize(
    "target",
    [
        FcmTarget(topic="news"),
        FcmTarget(fid="fid-1"),
        FcmTarget(condition="'news' in topics && !('cats' in topics)"),
    ],
)
def test_topics_conditions_and_fids_can_be_targets(fcm_client, target):
    assert fcm_client.send(build_message(target=target, title="a", body="b", data={}))


# --- One client per tenant credential ----------------------------------------------------


def test_client_for_tenant_shares_one_client_per_credential(sandbox_credential, tenant):
    first = client_for_tenant(tenant)

    assert client_for_tenant(tenant) is first
    assert first.project_id == sandbox_credential.project_id
    assert first.send(message())


def test_client_for_tenant_notices_a_replaced_credential(
    sandbox_credential, tenant, fcm_sandbox, sandbox_private_key
):
    first = client_for_tenant(tenant)
    info = create_service_account(
        project_id="herald-other", token_uri=fcm_sandbox.token_url, private_key_pem=sandbox_private_key
    )
    set_credentials(tenant=tenant, raw=json.dumps(info))

    second = client_for_tenant(tenant)

    assert second is not first
    assert second.project_id == "herald-other"
    assert second.send(message()).startswith("projects/herald-other/")


def test_client_for_tenant_is_a_configuration_error_without_any_credential(tenant, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)

    with pytest.raises(FcmError) as caught:
        client_for_tenant(tenant)

    assert (caught.value.code, caught.value.permanent) == ("CONFIGURATION", True)
    assert "acme" in caught.value.detail


def test_client_for_tenant_falls_back_to_application_default_credentials(
    tenant, sandbox_service_account, monkeypatch, tmp_path
):
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(sandbox_service_account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    client = client_for_tenant(tenant)

    assert client.project_id == "herald-test"
    assert client.send(message())


def test_a_credential_no_key_decrypts_is_a_configuration_error(sandbox_credential, tenant, settings):
    settings.SECRET_KEY = "another-secret-key"

    with pytest.raises(FcmError) as caught:
        client_for_tenant(tenant)

    assert caught.value.code == "CONFIGURATION"
    assert "cannot be decrypted" in caught.value.detail


def test_a_thousand_sends_from_many_threads_use_one_token_and_few_connections(
    sandbox_credential, tenant, fcm_sandbox, settings
):
    # urllib3's pool; curl's handles are counted in test_fcm_transports.py.
    settings.HERALD_FCM_TRANSPORT = "urllib3"
    client = client_for_tenant(tenant)
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(lambda i: client.send(message(f"device-{i}")), range(400)))

    assert len(set(names)) == 400
    assert fcm_sandbox.state.token_requests == 1
    assert connections_opened(client) <= 8


# --- Checking a credential ----------------------------------------------------------------


def test_check_credentials_proves_a_working_credential(sandbox_credential, tenant, fcm_sandbox):
    result = check_credentials(tenant=tenant)

    assert result.ok, result.message
    assert result.project_id == sandbox_credential.project_id
    assert result.source == "stored"
    assert "Works" in result.message and "nothing was delivered" in result.message
    assert not SandboxMessage.objects.exists()  # validate_only
    sandbox_credential.refresh_from_db()
    assert sandbox_credential.last_check_ok is True
    assert sandbox_credential.last_checked_at is not None


def test_check_credentials_explains_a_key_google_refuses(tenant, fcm_sandbox, sandbox_service_account):
    from fcm_sandbox.accounts import generate_private_key_pem

    set_credentials(
        tenant=tenant, raw=json.dumps({**sandbox_service_account, "private_key": generate_private_key_pem()})
    )

    result = check_credentials(tenant=tenant)

    assert not result.ok
    assert "refused the key of" in result.message
    assert "Invalid JWT Signature" in result.message
    assert FirebaseCredential.objects.get(tenant=tenant).last_check_ok is False


def test_check_credentials_explains_a_key_of_another_project(tenant, fcm_sandbox, sandbox_service_account):
    set_credentials(tenant=tenant, raw=json.dumps({**sandbox_service_account, "project_id": "someone-else"}))

    result = check_credentials(tenant=tenant)

    assert not result.ok
    assert result.project_id == "someone-else"
    assert "PERMISSION_DENIED" in result.message
    assert "Firebase Cloud Messaging API is enabled" in result.message


def test_check_credentials_without_any_credential_says_so(tenant, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)

    result = check_credentials(tenant=tenant)

    assert not result.ok
    assert "no Firebase credential" in result.message


def test_the_check_command_reports_success_and_failure(sandbox_credential, tenant, fcm_sandbox, capsys):
    call_command("check_fcm_credentials", "acme")
    assert "Works" in capsys.readouterr().out

    fcm_sandbox.state.configure(failure_rate=1.0)
    with pytest.raises(CommandError, match="rejected a test message"):
        call_command("check_fcm_credentials", "acme")


def test_the_admin_check_action_shows_the_result(sandbox_credential, fcm_sandbox, admin_client):
    response = admin_client.post(
        "/admin/tenants/firebasecredential/",
        {"action": "check_selected", "_selected_action": [sandbox_credential.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Works: got an access token" in response.content.decode()
