import pytest
from rest_framework.test import APIClient

from devices.models import AppUser, Device


@pytest.fixture
def immediate_tasks(settings):
    """Run background tasks in-process, at once (deferred work waits for recover_stalled)."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture
def server(tenant, server_key):
    """An API client authenticated with the tenant's server key."""
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=server_key)
    return client


@pytest.fixture
def make_device(tenant):
    def make_device(
        token,
        *,
        user="user_1",
        platform="android",
        permission=True,
        country="TR",
        language="tr",
        owner=None,
        **fields,
    ):
        owner = owner or tenant
        app_user, _ = AppUser.objects.get_or_create(
            tenant=owner, app_user_id=user, defaults={"country": country, "language": language}
        )
        return Device.objects.create(
            tenant=owner, user=app_user, token=token, platform=platform, push_permission=permission, **fields
        )

    return make_device


@pytest.fixture
def sandbox(sandbox_server, immediate_tasks):
    """The sandbox, with background tasks run at once in the test's own process."""
    return sandbox_server


@pytest.fixture
def sandbox_server(transactional_db, settings, tenant):
    """The FCM sandbox on a free local port; `tenant`'s credential and FCM_API_URL point at it.

    Transactional: the sandbox serves from its own threads and database connections.
    """
    from fcm_sandbox.accounts import provision_tenant
    from fcm_sandbox.server import SandboxServer

    server = SandboxServer(quiet=True).start()
    server.state.configure()
    settings.FCM_API_URL = server.url
    settings.FCM_ALLOWED_TOKEN_URIS = [*settings.FCM_ALLOWED_TOKEN_URIS, server.token_url]
    provision_tenant(tenant=tenant, sandbox_url=server.url)
    yield server
    server.stop()


@pytest.fixture
def inbox():
    """What the sandbox received, per target: {token: [FCM message dicts]}."""
    from fcm_sandbox.models import SandboxMessage

    def inbox():
        received = {}
        for m in SandboxMessage.objects.order_by("id"):
            received.setdefault(m.target, []).append(m.message)
        return received

    return inbox
