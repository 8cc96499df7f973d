"""A few threads that own the sandbox's database connections.

The sandbox serves every keep-alive client connection from its own thread; a sender with
128 requests in flight holds 128 of them. Were each to query the database, each would open
(and keep) a connection of its own, and 128 would exhaust a PostgreSQL server's. So request
threads never touch the database: they hand the work to these threads, a fixed few, and
wait for the answer.

    threads = DatabaseThreads(size=4).start()
    row = threads.run(SandboxMessage.objects.create, name=..., ...)
    threads.stop()   # closes their connections
"""

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.db import connections

_STOP = object()


class DatabaseThreads:
    """`size` threads running database work for other threads, one connection each at most."""

    def __init__(self, *, size: int = 4, close_after_each: bool = False, connections_override=None):
        if size < 1:
            raise ValueError("A sandbox needs at least one database thread.")
        self.size = size
        self.close_after_each = close_after_each
        self.connections_override = dict(connections_override or {})
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> "DatabaseThreads":
        for n in range(self.size):
            thread = threading.Thread(target=self._serve, name=f"fcm-sandbox-db-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def run(self, function: Callable[..., Any], *args, **kwargs) -> Any:
        """Run `function` on a database thread; return its result or raise its exception."""
        if not self._threads:  # not started (a view called outside the server): run here
            return function(*args, **kwargs)
        future: Future = Future()
        self._jobs.put((future, function, args, kwargs))
        return future.result()

    def stop(self, timeout: float = 10.0) -> None:
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _serve(self) -> None:
        for alias, conn in self.connections_override.items():
            connections[alias] = conn
        try:
            while (job := self._jobs.get()) is not _STOP:
                future, function, args, kwargs = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(function(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
                finally:
                    if self.close_after_each:
                        connections.close_all()
        finally:
            connections.close_all()


def in_database_thread(view):
    """Run a whole view on the server's database threads (views that only read and render)."""

    def wrapped(request, *args, **kwargs):
        threads = getattr(request, "database_threads", None)
        if threads is None:
            return view(request, *args, **kwargs)
        return threads.run(view, request, *args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = view.__name__, view.__doc__
    return wrapped
