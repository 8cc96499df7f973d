"""Pytest fixtures for tests that talk to the FCM sandbox over real HTTP.

tests/conftest.py loads this module as a plugin (``pytest_plugins``), so every test
can ask for them.

The sandbox's threads serve DB-backed views, so a test using ``fcm_sandbox`` runs as a
transactional test (like pytest-django's ``live_server``): data it creates is
committed, visible to the server, and flushed afterwards.
"""

import socket

import pytest

from fcm_sandbox.accounts import create_service_account, generate_private_key_pem, provision_tenant
from fcm_sandbox.server import SandboxServer
from fcm_sandbox.state import state
from messaging.fcm import forget_clients

LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def local_network_only(monkeypatch):
    """Fail fast on any host but this machine: tests must never reach Google."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def sandbox_private_key() -> str:
    """One RSA key for the whole run: generating one takes a good fraction of a second."""
    return generate_private_key_pem()


@pytest.fixture
def fcm_sandbox(transactional_db, settings, local_network_only):
    """The sandbox on a free port of 127.0.0.1, fresh state, FCM_API_URL pointing at it."""
    state.configure()
    forget_clients()
    server = SandboxServer(quiet=True).start()
    settings.FCM_API_URL = server.url
    settings.FCM_TOKEN_URL = ""
    # The sandbox's token endpoint, on a port of the moment, is one Herald may call.
    settings.FCM_ALLOWED_TOKEN_URIS = [*settings.FCM_ALLOWED_TOKEN_URIS, server.token_url]
    try:
        yield server
    finally:
        forget_clients()  # closes keep-alive connections, so server threads finish
        server.stop()
        state.configure()


@pytest.fixture
def sandbox_service_account(fcm_sandbox, sandbox_private_key) -> dict:
    """A service-account JSON (project "herald-test") whose token_uri is the sandbox's."""
    return create_service_account(
        project_id="herald-test", token_uri=fcm_sandbox.token_url, private_key_pem=sandbox_private_key
    )


@pytest.fixture
def sandbox_credential(fcm_sandbox, tenant, sandbox_private_key):
    """The `tenant` fixture's stored FirebaseCredential, trusted by the sandbox."""
    credential, _ = provision_tenant(
        tenant=tenant, sandbox_url=fcm_sandbox.url, private_key_pem=sandbox_private_key
    )
    return credential
