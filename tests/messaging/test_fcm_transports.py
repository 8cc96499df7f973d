"""The FCM client's transports (urllib3, curl) and send_many, against the sandbox over real HTTP.

The sandbox speaks HTTP/1.1 over plain HTTP, so here the curl transport runs its
HTTP/1.1 path; its HTTP/2 streams over TLS are exercised by bench/http_clients.py
against nginx. Both transports must give the same answers; curl is the default.
"""

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fcm_sandbox.models import SandboxMessage
from messaging import fcm
from messaging.fcm import CurlFcmClient, FcmClient, FcmError, FcmTarget, build_message, make_client
from messaging.services import MessageInput, client_for_tenant, create_message

pytest.importorskip("pycurl")

TRANSPORTS = ["urllib3", "curl"]


def message(token="device-token-1"):
    return build_message(target=FcmTarget(token=token), title="Hello", body="World", data={"k": "v"})


@pytest.fixture(params=TRANSPORTS)
def transport(request, settings):
    settings.HERALD_FCM_TRANSPORT = request.param
    return request.param


@pytest.fixture
def client(transport, sandbox_service_account, fcm_sandbox):
    client = make_client(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url, pool_size=8)
    yield client
    client.close()


def test_the_setting_chooses_the_transport(client, transport):
    assert type(client) is {"urllib3": FcmClient, "curl": CurlFcmClient}[transport]


def test_curl_is_the_transport_unless_the_environment_names_urllib3():
    env = {key: value for key, value in os.environ.items() if key != "HERALD_FCM_TRANSPORT"}
    code = "import config.settings as s; print(s.HERALD_FCM_TRANSPORT)"

    def configured(**extra) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parents[2],
            env={**env, **extra},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert configured() == "curl"
    assert configured(HERALD_FCM_TRANSPORT="urllib3") == "urllib3"


def test_an_unknown_transport_is_a_configuration_error(settings, sandbox_service_account):
    settings.HERALD_FCM_TRANSPORT = "carrier-pigeon"

    with pytest.raises(FcmError) as caught:
        make_client(service_account_info=sandbox_service_account)

    assert (caught.value.code, caught.value.permanent) == ("CONFIGURATION", True)
    assert "carrier-pigeon" in caught.value.detail


def test_send_returns_the_name_the_sandbox_stored(client, fcm_sandbox):
    name = client.send(message())

    stored = SandboxMessage.objects.get()
    assert stored.name == name
    assert stored.message["data"] == {"k": "v", "title": "Hello", "body": "World"}


def test_send_many_answers_each_message_in_order_with_its_name_or_its_error(client, fcm_sandbox):
    tokens = [f"device-{i}" for i in range(30)] + [
        "sandbox-unregistered-1",
        "sandbox-quota-7-abc",
        "sandbox-unavailable-1",
        "sandbox-invalid-1",
        "device-last",
    ]

    results = client.send_many([message(token) for token in tokens])

    names = {stored.target: stored.name for stored in SandboxMessage.objects.all()}
    for token, result in zip(tokens[:30] + ["device-last"], results[:30] + results[-1:], strict=True):
        assert result == names[token]
    unregistered, quota, unavailable, invalid = results[30:34]
    assert (unregistered.code, unregistered.status, unregistered.unregistered) == ("UNREGISTERED", 404, True)
    assert (quota.code, quota.permanent, quota.retry_after) == ("QUOTA_EXCEEDED", False, 7.0)
    assert (unavailable.code, unavailable.retry_after) == ("UNAVAILABLE", 30.0)
    assert (invalid.code, invalid.permanent) == ("INVALID_ARGUMENT", True)
    assert fcm_sandbox.state.token_requests == 1


def test_send_many_validate_only_delivers_nothing(client):
    results = client.send_many([message(), message("device-2")], validate_only=True)

    assert results == ["projects/herald-test/messages/fake_message_id"] * 2
    assert not SandboxMessage.objects.exists()


def test_send_many_replaces_a_rejected_token_once_and_sends_again(client, fcm_sandbox):
    client.send(message())
    fcm_sandbox.state.revoke_access_tokens()

    results = client.send_many([message(f"device-{i}") for i in range(20)])

    assert all(isinstance(result, str) for result in results)
    assert fcm_sandbox.state.token_requests == 2
    assert SandboxMessage.objects.count() == 21


def test_send_many_reports_a_fresh_token_rejected_too(transport, sandbox_service_account, fcm_sandbox):
    fcm_sandbox.state.configure(token_lifetime=0)  # every token is expired on arrival
    client = make_client(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url)

    results = client.send_many([message(), message("device-2")])

    assert [(error.code, error.status, error.permanent) for error in results] == [
        ("UNAUTHENTICATED", 401, True)
    ] * 2
    if transport == "curl":  # one batch, one token, one replacement (urllib3's threads each ask)
        assert fcm_sandbox.state.token_requests == 2
    client.close()


def test_send_many_answers_every_message_with_the_error_of_a_token_it_cannot_get(
    transport, sandbox_service_account, fcm_sandbox
):
    from fcm_sandbox.accounts import generate_private_key_pem

    forged = {**sandbox_service_account, "private_key": generate_private_key_pem()}
    client = make_client(service_account_info=forged, api_url=fcm_sandbox.url)

    results = client.send_many([message("device-1"), message("device-2")])
    client.close()

    assert [(r.code, r.permanent) for r in results] == [("UNAUTHENTICATED", True)] * 2
    assert not SandboxMessage.objects.exists()


def test_a_slow_fcm_is_a_retryable_timeout_in_send_and_send_many(
    transport, sandbox_service_account, fcm_sandbox
):
    client = make_client(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url, timeout=0.3)
    client.access_token()

    with pytest.raises(FcmError) as caught:
        client.send(message("sandbox-slow-1000"))
    slow, fast = client.send_many([message("sandbox-slow-1000"), message("device-2")])

    for error in (caught.value, slow):
        assert (error.code, error.status, error.permanent) == ("TIMEOUT", None, False)
    assert fast.startswith("projects/herald-test/messages/")
    client.close()


def test_an_unreachable_fcm_is_a_retryable_connection_error(transport, sandbox_service_account, fcm_sandbox):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    client = make_client(
        service_account_info=sandbox_service_account, api_url=f"http://127.0.0.1:{closed_port}"
    )

    with pytest.raises(FcmError) as caught:
        client.send(message())
    [failed] = client.send_many([message()])

    for error in (caught.value, failed):
        assert (error.code, error.status, error.permanent) == ("CONNECTION_ERROR", None, False)
    client.close()


def test_send_many_keeps_its_connections_for_the_next_call(client, fcm_sandbox):
    for _ in range(3):
        assert all(isinstance(r, str) for r in client.send_many([message(f"d-{i}") for i in range(40)]))

    assert SandboxMessage.objects.count() == 120
    assert fcm_sandbox.state.token_requests == 1


def test_the_shared_client_of_a_tenant_follows_the_setting(transport, sandbox_credential, tenant):
    client = client_for_tenant(tenant)

    assert isinstance(client, CurlFcmClient) == (transport == "curl")
    assert client.send(message()).startswith(f"projects/{sandbox_credential.project_id}/")


def test_a_credential_check_works_on_either_transport(transport, sandbox_service_account, fcm_sandbox):
    ok, said = fcm.check_service_account(sandbox_service_account)

    assert ok, said


def test_curl_sends_from_many_threads_reuse_a_handful_of_handles(
    settings, sandbox_service_account, fcm_sandbox
):
    settings.HERALD_FCM_TRANSPORT = "curl"
    client = make_client(service_account_info=sandbox_service_account, api_url=fcm_sandbox.url)

    for _ in range(3):  # a new pool of threads each time, as a worker makes one per chunk
        with ThreadPoolExecutor(max_workers=6) as pool:
            names = list(pool.map(lambda i: client.send(message(f"device-{i}")), range(60)))
        assert len(set(names)) == 60

    assert len(client._all_handles) <= 6  # handles (and their connections) outlive the threads
    assert fcm_sandbox.state.token_requests == 1
    client.close()


def test_a_message_goes_out_over_either_transport_with_every_result_recorded(
    transport, sandbox, tenant, make_device, settings, inbox
):
    # With curl a chunk goes through send_many in batches of at most half the unrecorded cap.
    settings.FANOUT_CHUNK_SIZE = 25
    settings.DELIVERY_RESULT_BATCH = 7
    settings.DELIVERY_MAX_UNRECORDED = 10
    for i in range(60):
        make_device(f"tok-{i:02}", user=f"u{i}")
    make_device("sandbox-unregistered-1", user="gone")

    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))

    message.refresh_from_db()
    assert (message.status, message.sent_count, message.failed_count) == ("completed_with_failures", 60, 1)
    assert len(inbox()) == 60
    assert all(d.fcm_message_name for d in message.deliveries.filter(status="sent"))
