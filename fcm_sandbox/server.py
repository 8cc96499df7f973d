"""Serving the sandbox over real HTTP: from ``manage.py fcm_sandbox``, or inside tests.

    with SandboxServer() as sandbox:          # a free port on 127.0.0.1
        settings.FCM_API_URL = sandbox.url
        ...

A threaded WSGI server (Django's own, with HTTP/1.1 keep-alive) runs Django's request
handler on the sandbox's URLconf, without Herald's middleware: the sandbox is Google,
not Herald, so sessions, CSRF and host checks do not apply.
"""

import logging
import socket
import threading

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connections

from fcm_sandbox.database import DatabaseThreads
from fcm_sandbox.state import state

URLCONF = "fcm_sandbox.urls"
logger = logging.getLogger(__name__)


class SandboxHandler(WSGIHandler):
    """Django's WSGI handler routed to the sandbox URLconf, counting requests in flight.

    Views do their database work on ``database_threads`` (see fcm_sandbox.database), so the
    sandbox holds that many database connections however many clients it serves.
    """

    def __init__(self, *, close_connections: bool = False):
        super().__init__()
        self.close_connections = close_connections
        self.database_threads: DatabaseThreads | None = None
        self.in_flight = 0
        self._idle = threading.Condition()

    def load_middleware(self, is_async=False):
        # What BaseHandler.load_middleware builds for an empty MIDDLEWARE setting.
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._answer)

    def _answer(self, request):
        response = self._get_response(request)
        # Error answers are the sandbox doing its job, not problems of Herald's:
        # keep them out of django.request's warnings (the access log still shows them).
        response._has_been_logged = True
        return response

    def get_response(self, request):
        request.urlconf = URLCONF
        request.database_threads = self.database_threads
        return super().get_response(request)

    def __call__(self, environ, start_response):
        with self._idle:
            self.in_flight += 1
        try:
            return super().__call__(environ, start_response)
        finally:
            if self.close_connections:
                # Tests: leave no connection behind in a thread that may outlive the
                # test (PostgreSQL will not drop a test database that is in use).
                connections.close_all()
            with self._idle:
                self.in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self.in_flight == 0, timeout)


class _RequestHandler(WSGIRequestHandler):
    # An idle keep-alive connection is closed after this many seconds; clients reconnect.
    timeout = 60

    def log_message(self, format, *args):
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


class HangsUpConnections:
    """A socketserver mixin that remembers open connections so that ``hang_up()`` can end them.

    An idle keep-alive connection otherwise holds its serving thread (and that thread's
    database connection) until the client goes away.
    """

    def __init__(self, *args, **kwargs):
        self.open_sockets: set = set()
        self._sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self):
        sock, address = super().get_request()
        with self._sockets_lock:
            self.open_sockets.add(sock)
        return sock, address

    def close_request(self, request):
        with self._sockets_lock:
            self.open_sockets.discard(request)
        super().close_request(request)

    def hang_up(self) -> None:
        """End idle keep-alive connections, so that their threads (and DB connections) end."""
        with self._sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(HangsUpConnections, ThreadedWSGIServer):
    request_queue_size = 128  # many senders connect at once


class SandboxServer:
    """The sandbox on a local port, in a background thread (or the foreground).

    ``port=0`` picks a free port (read it back from ``.port`` or ``.url``).
    ``close_connections`` closes the database threads' connections after every job: right
    for tests, whose database must not stay in use after them; the long-running command
    turns it off and keeps its ``db_connections`` connections open.
    ``db_connections`` is how many connections the sandbox opens at most, however many
    clients send at once.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = False,
        close_connections: bool = True,
        db_connections: int = 4,
    ):
        self.host, self.port = host, port
        self.quiet = quiet
        self.close_connections = close_connections
        self.db_connections = db_connections
        self.handler = SandboxHandler(close_connections=close_connections)
        self.state = state
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._shared: list = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def bind(self) -> "SandboxServer":
        # An in-memory SQLite database exists only in the connection that made it:
        # hand that connection to the server's threads, as LiveServerTestCase does.
        overrides = {}
        for conn in connections.all():
            if conn.vendor == "sqlite" and conn.is_in_memory_db():
                conn.inc_thread_sharing()
                overrides[conn.alias] = conn
                self._shared.append(conn)
        self._httpd = _Server(
            (self.host, self.port),
            _RequestHandler,
            ipv6=":" in self.host,
            allow_reuse_address=True,
            connections_override=overrides,
        )
        self._httpd.quiet = self.quiet
        self._httpd.set_app(self.handler)
        self.handler.database_threads = DatabaseThreads(
            size=self.db_connections, close_after_each=self.close_connections, connections_override=overrides
        ).start()
        self.port = self._httpd.server_address[1]
        return self

    def start(self) -> "SandboxServer":
        """Serve in a daemon thread; returns once the port is bound."""
        if self._httpd is None:
            self.bind()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fcm-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self._httpd is None:
            self.bind()
        self._httpd.serve_forever()

    def stop(self, *, wait: float = 10.0) -> None:
        """Stop accepting, and wait for requests in flight (a slow fault may be sleeping)."""
        if self._httpd is not None:
            if self._thread is not None:  # shutdown() would wait forever on a loop never run
                self._httpd.shutdown()
                self._thread = None
            self._httpd.server_close()
            if not self.handler.wait_idle(wait):
                logger.warning("FCM sandbox stopped with requests still in flight")
            self._httpd.hang_up()
            self._httpd = None
        if self.handler.database_threads is not None:
            self.handler.database_threads.stop()
            self.handler.database_threads = None
        for conn in self._shared:
            conn.dec_thread_sharing()
        self._shared.clear()

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
