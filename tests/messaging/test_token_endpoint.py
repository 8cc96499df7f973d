"""The token endpoint a service account names is an upload's URL: Herald calls only Google's.

An uploaded key's token_uri must not aim Herald's web and worker processes at internal
services (SSRF): only Google's two token endpoints, and those the operator lists in
FCM_ALLOWED_TOKEN_URIS, are accepted, at upload and again at use; redirects are never
followed; a token request gives up after FCM_TOKEN_TIMEOUT; and whatever the remote end
answers, only a status and a short reason of Herald's own reach the admin and the logs.
"""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from fcm_sandbox.accounts import create_service_account
from messaging import fcm
from messaging.fcm import FcmClient, FcmError
from messaging.services import check_credentials, client_for_tenant
from tenants.credentials import InvalidServiceAccount, set_credentials
from tenants.models import FirebaseCredential

pytest_plugins = ["tests.staff_fixtures"]

SECRET_BODY = "root:x:0:0:internal-metadata-secret"
INTERNAL = [
    "http://127.0.0.1:8000/token",
    "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
    "http://metadata.google.internal/token",
    "http://2130706433/token",  # 127.0.0.1 as a decimal
    "https://oauth2.googleapis.com.evil.example/token",
    "https://oauth2.googleapis.com/token/../../internal",
    "http://oauth2.googleapis.com/token",  # Google's, but not over TLS
]


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request as its server's `answer` says, and counts what it was asked."""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, body = self.server.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    """Start a local HTTP server answering (status, headers, body); yields a factory."""
    servers = []

    def start(status=200, headers=None, body=b""):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        server.hits, server.answer = [], (status, headers or {}, body)
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def key_with(account: dict, token_uri: str) -> str:
    return json.dumps({**account, "token_uri": token_uri})


# --- At upload ----------------------------------------------------------------------------


@pytest.mark.parametrize("token_uri", INTERNAL)
def test_set_credentials_refuses_a_token_uri_that_is_not_googles(db, tenant, sandbox_private_key, token_uri):
    account = create_service_account(
        project_id="acme-push",
        token_uri="https://oauth2.googleapis.com/token",
        private_key_pem=sandbox_private_key,
    )

    with pytest.raises(InvalidServiceAccount) as caught:
        set_credentials(tenant=tenant, raw=key_with(account, token_uri))

    assert caught.value.code == "token_uri_not_allowed"
    assert "https://oauth2.googleapis.com/token" in str(caught.value)
    assert not FirebaseCredential.objects.exists()


@pytest.mark.parametrize(
    "token_uri", ["https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token"]
)
def test_googles_two_token_endpoints_are_accepted(db, tenant, sandbox_private_key, token_uri):
    account = create_service_account(
        project_id="acme-push", token_uri=token_uri, private_key_pem=sandbox_private_key
    )

    assert set_credentials(tenant=tenant, raw=json.dumps(account)).token_uri == token_uri


def test_the_operator_may_allow_another_token_endpoint(db, tenant, sandbox_private_key, settings):
    settings.FCM_ALLOWED_TOKEN_URIS = ["https://oauth.internal.example/token"]
    account = create_service_account(
        project_id="acme-push",
        token_uri="https://oauth.internal.example/token",
        private_key_pem=sandbox_private_key,
    )

    assert set_credentials(tenant=tenant, raw=json.dumps(account)).token_uri == account["token_uri"]


def test_the_admin_refuses_an_upload_naming_an_internal_token_uri(tenant_admin, tenant, sandbox_private_key):
    account = create_service_account(
        project_id="acme-push", token_uri="http://169.254.169.254/token", private_key_pem=sandbox_private_key
    )
    file = SimpleUploadedFile("key.json", json.dumps(account).encode(), "application/json")

    response = tenant_admin.post(
        "/admin/tenants/firebasecredential/add/", {"tenant": tenant.pk, "service_account_file": file}
    )

    assert response.status_code == 200
    assert "not Google&#x27;s token endpoint" in response.content.decode()
    assert not FirebaseCredential.objects.exists()


def test_set_fcm_credentials_refuses_an_internal_token_uri(db, tenant, sandbox_private_key, tmp_path):
    account = create_service_account(
        project_id="acme-push", token_uri="http://127.0.0.1:6379/token", private_key_pem=sandbox_private_key
    )
    path = tmp_path / "key.json"
    path.write_text(json.dumps(account))

    with pytest.raises(CommandError, match="not Google's token endpoint"):
        call_command("set_fcm_credentials", tenant.tenant_id, str(path))
    assert not FirebaseCredential.objects.exists()


# --- At use -------------------------------------------------------------------------------


def test_a_stored_credential_naming_an_internal_token_uri_is_never_called(
    fcm_sandbox, tenant, sandbox_credential, local_server
):
    internal = local_server(body=b'{"access_token": "stolen", "expires_in": 3600}')
    # A row written before the rule existed, or by hand: the client refuses it all the same.
    FirebaseCredential.objects.filter(pk=sandbox_credential.pk).update(token_uri=f"{internal.url}/token")

    with pytest.raises(FcmError) as caught:
        client_for_tenant(tenant)

    assert caught.value.code == fcm.CONFIGURATION and caught.value.permanent
    assert "not Google's token endpoint" in caught.value.detail
    assert internal.hits == []


def test_redirects_from_the_token_endpoint_are_not_followed(
    fcm_sandbox, sandbox_service_account, local_server, settings
):
    internal = local_server(body=SECRET_BODY.encode())
    redirector = local_server(
        status=302, headers={"Location": f"{internal.url}/latest/meta-data"}, body=b"moved"
    )
    settings.FCM_ALLOWED_TOKEN_URIS = [f"{redirector.url}/token"]
    info = {**sandbox_service_account, "token_uri": f"{redirector.url}/token"}
    client = FcmClient(service_account_info=info, api_url=fcm_sandbox.url)

    with pytest.raises(FcmError) as caught:
        client.access_token()
    client.close()

    assert redirector.hits == ["/token"]
    assert internal.hits == []
    assert caught.value.status == 302
    assert "redirect" in caught.value.detail


def test_a_refusal_shows_the_status_and_a_known_reason_never_the_remote_body(
    fcm_sandbox, tenant, sandbox_service_account, local_server, settings, admin_client, caplog
):
    body = json.dumps({"error": SECRET_BODY, "error_description": SECRET_BODY}).encode()
    remote = local_server(status=400, headers={"Content-Type": "application/json"}, body=body)
    settings.FCM_ALLOWED_TOKEN_URIS = [f"{remote.url}/token"]
    credential = set_credentials(tenant=tenant, raw=key_with(sandbox_service_account, f"{remote.url}/token"))

    with caplog.at_level(logging.DEBUG):
        result = check_credentials(tenant=tenant)
        admin_client.post(
            "/admin/tenants/firebasecredential/",
            {"action": "check_selected", "_selected_action": [credential.pk]},
        )
    page = admin_client.get(f"/admin/tenants/firebasecredential/{credential.pk}/change/").content.decode()

    credential.refresh_from_db()
    assert not result.ok
    assert "HTTP 400" in result.message
    for shown in (result.message, credential.last_check_message, page, caplog.text):
        assert "internal-metadata-secret" not in shown
    assert "HTTP 400" in credential.last_check_message


def test_a_google_refusal_keeps_its_oauth_error_code_and_a_known_reason(fcm_sandbox, sandbox_service_account):
    from fcm_sandbox.accounts import generate_private_key_pem

    forged = {**sandbox_service_account, "private_key": generate_private_key_pem()}
    client = FcmClient(service_account_info=forged, api_url=fcm_sandbox.url)

    with pytest.raises(FcmError) as caught:
        client.access_token()
    client.close()

    assert caught.value.detail == (
        f"The token endpoint {fcm_sandbox.token_url} refused the key of {forged['client_email']} "
        "(HTTP 400, invalid_grant: Invalid JWT Signature: the key was deleted, disabled or is not "
        "this account's)."
    )


def test_a_token_endpoint_that_never_answers_gives_up_after_the_token_timeout(
    fcm_sandbox, sandbox_service_account, settings
):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        token_uri = f"http://127.0.0.1:{silent.getsockname()[1]}/token"
        settings.FCM_ALLOWED_TOKEN_URIS = [token_uri]
        settings.FCM_TOKEN_TIMEOUT = 0.2
        client = FcmClient(
            service_account_info={**sandbox_service_account, "token_uri": token_uri},
            api_url=fcm_sandbox.url,
            timeout=10,
        )

        with pytest.raises(FcmError) as caught:
            client.access_token()
        client.close()

    assert client.token_timeout == 0.2
    assert caught.value.code == fcm.TIMEOUT and not caught.value.permanent
    assert caught.value.detail == f"Could not get an access token from {token_uri}: no answer within 0.2s."


def test_an_unreachable_token_url_is_named_once_in_the_check(
    fcm_sandbox, tenant, sandbox_service_account, settings
):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        token_uri = f"http://127.0.0.1:{unused.getsockname()[1]}/token"
    settings.FCM_ALLOWED_TOKEN_URIS = [token_uri]
    set_credentials(tenant=tenant, raw=key_with(sandbox_service_account, token_uri))

    result = check_credentials(tenant=tenant)

    assert not result.ok
    assert result.message == f"Could not get an access token from {token_uri}: the connection was refused."
