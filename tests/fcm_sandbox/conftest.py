# The device simulator's tests drive a whole send through Herald: they share messaging's fixtures.
from tests.messaging.conftest import immediate_tasks, sandbox, sandbox_server, server  # noqa: F401
