"""A real HTTP receiver on 127.0.0.1 for webhook posts, and settings that let Herald reach it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# The FCM sandbox and device helpers of the messaging tests.
from tests.messaging.conftest import inbox, make_device, sandbox_server, server  # noqa: F401
from webhooks import services
from webhooks.models import EventType


class Receiver:
    """A tenant's back end: records every POST; answers with the statuses queued in
    `answers` (then 200), or redirects to `redirect_to`."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.redirect_to = ""
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.answers.pop(0) if receiver.answers else 200
                if receiver.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", receiver.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                reply = b"secret-internal-response-body"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/herald"

    def events(self) -> list[dict]:
        """Every event received, in order, from every batch."""
        return [e for r in self.requests for e in json.loads(r["body"])["data"]]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_webhooks(settings):
    """Let webhooks reach 127.0.0.1 over plain http, as only tests (and private installs) may."""
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    services.forget_subscriptions()
    yield
    services.forget_subscriptions()


@pytest.fixture
def webhook_tasks(settings):
    """Background tasks in-process, at once, on both queues."""
    settings.TASKS = {
        "default": {
            "BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
            "QUEUES": ["default", "webhooks"],
        }
    }


@pytest.fixture
def receiver(local_webhooks):
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def make_endpoint(tenant):
    def make_endpoint(url, *, event_types=None, owner=None):
        endpoint, secret = services.create_endpoint(
            tenant=owner or tenant, url=url, event_types=event_types or list(EventType.values)
        )
        endpoint.raw_secret = secret
        return endpoint

    return make_endpoint


@pytest.fixture
def sandbox(webhook_tasks, sandbox_server):  # noqa: F811
    """The FCM sandbox (see tests/messaging), with tasks of both queues run at once."""
    return sandbox_server
