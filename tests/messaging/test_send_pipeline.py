"""A send task keeps sends in flight from chunk to chunk: it takes its message's next queued
chunks (and fan-out) off the queue while they are what a worker would take next, and
never passes anything that ranks above them."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tasks_db.models import DBTaskResult

from fcm_sandbox.models import SandboxMessage
from messaging import services
from messaging.models import Delivery, Message
from messaging.services import MessageInput, create_message, recover_stalled
from tenants.models import Tenant
from tests.messaging import workers
from tests.messaging.test_send_queue import run_queue


@pytest.fixture
def database_tasks(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}


@pytest.fixture
def big_message(tenant, make_device, settings):
    """A message to twelve devices, in chunks of two written two at a time by each fan-out task."""
    settings.FANOUT_CHUNK_SIZE = 2
    settings.FANOUT_TASK_CHUNKS = 2
    for i in range(12):
        make_device(f"big-{i:02}", user=f"big{i}")
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Big", body="x"))
    return message


def run_by_a_worker(task_path: str) -> list[DBTaskResult]:
    """The tasks of that path a worker ran itself (not taken by a running send task)."""
    return [t for t in DBTaskResult.objects.filter(task_path=task_path) if t.worker_ids]


def taken_by_a_send() -> list[DBTaskResult]:
    return list(DBTaskResult.objects.filter(return_value={"taken_by_running_send": True}))


def received_per_token() -> Counter:
    return Counter(m.target for m in SandboxMessage.objects.all())


def test_a_send_task_sends_its_messages_next_chunks_and_fan_out_in_the_same_task(
    sandbox_server, database_tasks, big_message
):
    ran = run_queue()

    big_message.refresh_from_db()
    assert (big_message.status, big_message.sent_count) == ("completed", 12)
    assert received_per_token() == {f"big-{i:02}": 1 for i in range(12)}
    assert len(run_by_a_worker("messaging.tasks.fan_out_message")) == 1, "only the first fan-out"
    assert len(run_by_a_worker("messaging.tasks.send_message_deliveries")) == 1, "only the first chunk"
    assert len(taken_by_a_send()) == 1 + 3, "the second chunk and three fan-out continuations"
    sends = DBTaskResult.objects.filter(task_path="messaging.tasks.send_message_deliveries")
    assert sends.count() == 2, "the continuations handed their four chunks to the send task, unqueued"
    assert not DBTaskResult.objects.filter(status="READY").exists()
    assert [name for name, _ in ran].count("send_message_deliveries") == 2, "each taken task is logged"


def test_a_send_task_leaves_its_next_chunk_queued_when_another_messages_first_chunk_waits(
    sandbox_server, database_tasks, big_message, make_device
):
    run_queue(max_tasks=1)  # the big message's first fan-out task: two chunks queued
    small_tenant = Tenant.objects.create(name="Small", tenant_id="small")
    make_device("small-1", user="s1", owner=small_tenant)
    small, _ = create_message(tenant=small_tenant, spec=MessageInput(title="Small", body="x"))

    [(name, args)] = run_queue(max_tasks=1)  # the big message's first chunk, queued before

    assert (name, args[0]) == ("send_message_deliveries", big_message.pk)
    assert taken_by_a_send() == []
    ready = [(t.task_path.rsplit(".", 1)[1], t.args_kwargs["args"][0]) for t in DBTaskResult.objects.ready()]
    assert ready[0] == ("fan_out_message", small.pk), "the small message's fan-out goes next"
    assert ("send_message_deliveries", big_message.pk) in ready, "the big one's second chunk still queued"
    assert Delivery.objects.filter(message=big_message, status="sent").count() == 2


def test_a_send_task_takes_nothing_once_its_pipeline_time_is_up(
    sandbox_server, database_tasks, big_message, settings
):
    settings.DELIVERY_PIPELINE_SECONDS = 0

    run_queue()

    big_message.refresh_from_db()
    assert (big_message.status, big_message.sent_count) == ("completed", 12)
    assert taken_by_a_send() == []
    assert len(run_by_a_worker("messaging.tasks.send_message_deliveries")) == 6


def test_a_send_task_whose_time_is_up_leaves_the_rest_to_its_chunks_queued_tasks(
    sandbox_server, database_tasks, big_message, settings, monkeypatch
):
    settings.FANOUT_TASK_CHUNKS = 10  # one fan-out task writes all six chunks
    settings.DELIVERY_PIPELINE_SECONDS = 2.5
    ticks = iter(range(100))
    monkeypatch.setattr(services._Feed, "clock", staticmethod(lambda: next(ticks)))  # a second a look
    run_queue(max_tasks=1)  # the fan-out

    run_queue(max_tasks=1)  # chunk 0's task takes chunks 1 and 2, then its time is up

    assert len(taken_by_a_send()) == 2
    assert Delivery.objects.filter(message=big_message, status="sent").count() == 6
    queued = [t.args_kwargs["args"] for t in DBTaskResult.objects.ready()]
    assert [big_message.pk, None, None] not in queued, "no message-wide task to send the queued chunks"
    assert len(queued) == 3, "chunks 3 to 5 wait in their ranks"


def test_a_queued_send_task_whose_chunk_was_sent_ends_at_once_sending_nothing(
    sandbox_server, tenant, make_device
):
    devices = [make_device(f"tok-{i}", user=f"u{i}") for i in range(3)]
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"), send=False)
    Message.objects.filter(pk=message.pk).update(status="sending", fanned_out_at=None)
    Delivery.objects.bulk_create([Delivery(message=message, device=d) for d in devices])
    chunk = {"message_id": message.pk, "first_device_id": devices[0].pk, "last_device_id": devices[-1].pk}
    services.send_deliveries(**chunk)
    assert received_per_token() == {"tok-0": 1, "tok-1": 1, "tok-2": 1}

    with CaptureQueriesContext(connection) as queries:
        services.send_deliveries(**chunk)  # the same chunk's task, queued before it was taken

    assert received_per_token() == {"tok-0": 1, "tok-1": 1, "tok-2": 1}
    statements = [q["sql"] for q in queries if q["sql"].split()[0] not in ("BEGIN", "COMMIT")]
    assert len(statements) <= 4, statements  # the message, the claim, its status, the closing check
    assert not any("dbtaskresult" in sql for sql in statements), "it takes no other task"


def database_sessions() -> int:
    """Other sessions connected to the test database now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs PostgreSQL (set DATABASE_URL)")
def test_two_workers_pipelining_one_message_send_each_device_one_push(sandbox_server, tenant, make_device):
    for i in range(200):
        make_device(f"tok-{i:03}", user=f"u{i}")
    sandbox_server.state.configure(latency_ms=5)
    env = workers.worker_env(
        FCM_API_URL=sandbox_server.url, FANOUT_CHUNK_SIZE=10, FANOUT_TASK_CHUNKS=2, SEND_CONCURRENCY=4
    )
    before = database_sessions()
    pair = [workers.start("db_worker", "--no-startup-delay", "--interval", "0.05", env=env) for _ in range(2)]
    try:
        # Both polling the queue before the message exists: on a loaded machine one worker
        # could otherwise send all of it while the other was still starting.
        workers.wait_for(lambda: database_sessions() >= before + 2, timeout=60, what="both workers polling")
        message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))
        workers.wait_for(
            lambda: Message.objects.get(pk=message.pk).is_final, timeout=120, what="the message to finish"
        )
    finally:
        for worker in pair:
            worker.terminate()
            worker.wait(timeout=10)

    message.refresh_from_db()
    assert (message.status, message.sent_count) == ("completed", 200)
    assert received_per_token() == {f"tok-{i:03}": 1 for i in range(200)}
    assert taken_by_a_send(), "the workers pipelined"
    assert len({t.worker_ids[0] for t in DBTaskResult.objects.exclude(worker_ids=[])}) == 2, "both worked"


def test_a_send_task_queues_the_chunks_a_fan_out_handed_it_once_another_messages_first_chunk_waits(
    sandbox_server, database_tasks, big_message, make_device, monkeypatch
):
    small_tenant = Tenant.objects.create(name="Small", tenant_id="small")
    make_device("small-1", user="s1", owner=small_tenant)
    fan_out = services.fan_out
    smalls = []

    def fan_out_then_a_small_message(**kwargs):
        result = fan_out(**kwargs)
        if kwargs.get("handed") is not None and not smalls:  # the first continuation run inline
            smalls.append(create_message(tenant=small_tenant, spec=MessageInput(title="Small", body="x"))[0])
        return result

    monkeypatch.setattr(services, "fan_out", fan_out_then_a_small_message)
    run_queue(max_tasks=1)  # the first fan-out task: chunks 0 and 1 queued

    run_queue(max_tasks=1)  # chunk 0's task takes chunk 1, runs the continuation: chunks 2, 3 handed

    [small] = smalls
    ready = [(t.task_path.rsplit(".", 1)[1], t.args_kwargs["args"]) for t in DBTaskResult.objects.ready()]
    assert ready[0] == ("fan_out_message", [small.pk]), "the small message's fan-out goes next"
    handed = sorted(args for name, args in ready if name == "send_message_deliveries")
    assert len(handed) == 2 and all(args[0] == big_message.pk for args in handed), "chunks 2 and 3 queued"
    assert Delivery.objects.filter(message=big_message, status="sent").count() == 4
    assert Delivery.objects.filter(message=big_message, claim="queued").count() == 4, "marked as queued"

    run_queue()

    big_message.refresh_from_db()
    assert (big_message.status, big_message.sent_count) == ("completed", 12)
    assert received_per_token() == {**{f"big-{i:02}": 1 for i in range(12)}, **received_small()}


def received_small() -> dict:
    return {token: n for token, n in received_per_token().items() if token.startswith("small")}


class Killed(BaseException):
    """The worker's process ends here (SIGKILL): nothing after runs."""


def test_chunks_a_fan_out_handed_to_a_send_task_that_dies_are_resumed_by_herald_beat_after_its_grace(
    sandbox_server, database_tasks, big_message, monkeypatch
):
    fan_out = services.fan_out

    def fan_out_then_die(**kwargs):
        fan_out(**kwargs)
        if kwargs.get("handed"):
            raise Killed

    monkeypatch.setattr(services, "fan_out", fan_out_then_die)
    run_queue(max_tasks=1)  # the first fan-out task: chunks 0 and 1 queued
    [chunk_0, _] = sorted(
        t.args_kwargs["args"] for t in DBTaskResult.objects.ready() if "send" in t.task_path
    )
    with pytest.raises(Killed):
        services.send_deliveries(
            message_id=big_message.pk, first_device_id=chunk_0[1], last_device_id=chunk_0[2]
        )
    monkeypatch.undo()
    handed = list(Delivery.objects.filter(message=big_message, status="pending", claim=""))
    assert len(handed) == 4, "chunks 2 and 3: written, unclaimed, not marked as queued"

    assert recover_stalled() == {}, "within the grace: left alone"
    run_queue()  # the continuation the fan-out queued before the kill: chunks 4 and 5
    recover_stalled(grace=timedelta(0))  # herald_beat, the grace over
    run_queue()

    sent = Delivery.objects.filter(pk__in=[d.pk for d in handed], status="sent").select_related("device")
    assert len(sent) == 4
    assert all(received_per_token()[d.device.token] == 1 for d in sent), "each sent once"
