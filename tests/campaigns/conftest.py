# The messaging tests' fixtures: an API client with a server key, devices, the FCM sandbox.
from tests.messaging.conftest import (  # noqa: F401
    immediate_tasks,
    inbox,
    make_device,
    sandbox,
    sandbox_server,
    server,
)
