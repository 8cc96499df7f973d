"""With TASK_BACKEND=rq, real rq workers on Redis deliver a message end to end."""

import os

import pytest

from fcm_sandbox.models import SandboxMessage
from messaging.models import Message
from tests.messaging import workers

pytestmark = pytest.mark.redis


@pytest.fixture
def rq_env(sandbox_server):
    import redis

    url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/14"  # a database of its own, emptied
    redis.Redis.from_url(url).flushdb()
    yield workers.worker_env(TASK_BACKEND="rq", REDIS_URL=url, FCM_API_URL=sandbox_server.url)
    redis.Redis.from_url(url).flushdb()


def test_a_message_queued_on_rq_is_delivered_by_an_rq_worker(rq_env, tenant, make_device):
    for i in range(12):
        make_device(f"tok-{i}", user=f"u{i}")

    out = workers.run("send_push", tenant.tenant_id, "--title", "Via RQ", "--body", "Hello", env=rq_env)
    message = Message.objects.get()
    assert "Sending" in out
    assert SandboxMessage.objects.count() == 0  # queued on Redis, not yet run

    workers.run(
        "rqworker", "--job-class", "django_tasks_rq.Job", "--burst", "default", env=rq_env, timeout=120
    )

    message.refresh_from_db()
    assert message.status == "completed"
    assert (message.targeted_count, message.sent_count) == (12, 12)
    assert SandboxMessage.objects.filter(title="Via RQ").count() == 12
