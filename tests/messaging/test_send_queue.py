"""What the send path puts in the task queue: one retry per message, never due in the past,
a dead worker's chunk recovered once, and a small new message ahead of another tenant's
backlog (django-tasks-db takes tasks by priority, then run_after, then age)."""

from datetime import timedelta

import time_machine
from django.dispatch import Signal
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from fcm_sandbox.accounts import provision_tenant
from messaging import services
from messaging.models import Delivery, Message
from messaging.services import MessageInput, create_message, recover_stalled, send_developer_push
from tenants.models import Tenant
from tests.task_queue import run_queue


def sending_message(tenant, devices, *, claimed_until=None, retry_in=None) -> Message:
    """A fanned-out sending message whose deliveries are held by a worker or wait for a retry."""
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"), send=False)
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(
        status="sending", started_at=now, fanned_out_at=now, targeted_count=len(devices)
    )
    fields = {}
    if claimed_until is not None:
        fields.update(claim="dead-worker", claimed_until=claimed_until)
    if retry_in is not None:
        fields.update(status="retrying", attempts=1, next_attempt_at=now + retry_in)
    Delivery.objects.bulk_create([Delivery(message=message, device=d, **fields) for d in devices])
    return message


def send_tasks(message=None):
    tasks = DBTaskResult.objects.filter(task_path="messaging.tasks.send_message_deliveries", status="READY")
    if message is not None:
        tasks = [t for t in tasks if t.args_kwargs["args"][0] == message.pk]
    return list(tasks)


def test_a_task_that_finds_only_a_dead_workers_claims_queues_nothing(
    sandbox_server, database_tasks, tenant, make_device
):
    devices = [make_device(f"tok-{i}", user=f"u{i}") for i in range(3)]
    message = sending_message(tenant, devices, claimed_until=timezone.now() + timedelta(minutes=5))

    for _ in range(5):  # what a worker did ~43 times a second
        services.send_deliveries(message_id=message.pk)

    assert send_tasks(message) == []


def test_at_most_one_retry_task_is_queued_per_message_and_never_due_in_the_past(
    sandbox_server, database_tasks, tenant, make_device
):
    devices = [make_device(f"tok-{i}", user=f"u{i}") for i in range(4)]
    message = sending_message(tenant, devices, retry_in=timedelta(seconds=30))

    for first, last in ((devices[0].pk, devices[1].pk), (devices[2].pk, devices[3].pk), (None, None)):
        services.send_deliveries(message_id=message.pk, first_device_id=first, last_device_id=last)

    [retry] = send_tasks(message)
    assert retry.run_after > timezone.now() + timedelta(seconds=25)
    assert retry.args_kwargs["args"] == [message.pk, None, None]


def test_herald_beat_recovers_a_dead_workers_chunk_once(db, database_tasks, tenant, make_device):
    devices = [make_device(f"tok-{i}", user=f"u{i}") for i in range(3)]
    message = sending_message(tenant, devices, claimed_until=timezone.now() - timedelta(seconds=1))
    Delivery.objects.filter(message=message).update(next_attempt_at=timezone.now() - timedelta(minutes=5))

    for _ in range(4):  # passes of herald_beat while the queue is busy
        recover_stalled(grace=timedelta(0))

    [recovery] = send_tasks(message)
    assert recovery.run_after.year == 9999, "queued to run now, not with a run_after in the past"


def test_a_small_new_message_is_taken_before_another_tenants_backlog(
    transactional_db, database_tasks, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 2
    settings.FANOUT_TASK_CHUNKS = 5
    for i in range(10):
        make_device(f"big-{i}", user=f"big{i}")
    big, _ = create_message(tenant=tenant, spec=MessageInput(title="Big", body="x"))
    services.fan_out(message_id=big.pk)  # five chunks queued
    small_tenant = Tenant.objects.create(name="Small", tenant_id="small")
    make_device("small-1", user="s1", owner=small_tenant)
    small, _ = create_message(tenant=small_tenant, spec=MessageInput(title="Small", body="x"))
    [small_fan_out] = [
        t
        for t in DBTaskResult.objects.filter(task_path="messaging.tasks.fan_out_message")
        if t.args_kwargs["args"] == [small.pk]
    ]

    order = list(DBTaskResult.objects.ready().values_list("id", flat=True))  # the worker's order
    big_chunks = [t.id for t in send_tasks(big)]

    assert len(big_chunks) == 5
    assert order.index(small_fan_out.id) < order.index(big_chunks[1]), "behind one chunk at most"
    services.fan_out(message_id=small.pk)
    [small_chunk] = send_tasks(small)
    order = list(DBTaskResult.objects.ready().values_list("id", flat=True))
    assert order.index(small_chunk.id) < order.index(big_chunks[1])


def test_a_one_device_push_queued_during_a_big_fan_out_is_sent_before_the_big_messages_later_chunks(
    sandbox_server, database_tasks, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 2
    settings.FANOUT_TASK_CHUNKS = 2
    for i in range(12):
        make_device(f"big-{i}", user=f"big{i}")
    small_tenant = Tenant.objects.create(name="Small", tenant_id="small")
    provision_tenant(tenant=small_tenant, sandbox_url=sandbox_server.url)
    make_device("small-1", user="s1", owner=small_tenant)
    big, _ = create_message(tenant=tenant, spec=MessageInput(title="Big", body="x"))
    first = run_queue(max_tasks=1)  # the big fan-out's first task: two chunks and its continuation
    # Three pushes in a row: the tenant's own earlier pushes, still sending, must not rank it back.
    smalls = [
        send_developer_push(
            tenant=small_tenant, app_user_id="s1", spec=MessageInput(title=f"Small {n}", body="x")
        ).message
        for n in range(3)
    ]

    ran = first + run_queue()

    def sends(message):
        return [
            i
            for i, (name, args) in enumerate(ran)
            if name == "send_message_deliveries" and args[0] == message.pk
        ]

    big_sends = sends(big)
    # Chunks 0 and 1, queued by the first fan-out task; the send task of chunk 1 runs the
    # continuations, which hand it chunks 2 to 5 unqueued.
    assert len(big_sends) == 2
    for small in smalls:
        [small_send] = sends(small)
        assert small_send < big_sends[1], "behind the big message's first chunk at most"
    big_fan_outs = [args for name, args in ran if name == "fan_out_message" and args[0] == big.pk]
    assert [args[1:] for args in big_fan_outs][:1] == [[]] and len(big_fan_outs) == 4, big_fan_outs
    big.refresh_from_db()
    assert (big.status, big.sent_count) == ("completed", 12)
    for small in smalls:
        small.refresh_from_db()
        assert (small.status, small.sent_count) == ("completed", 1)


def stalled_message(tenant, devices) -> Message:
    """A message whose worker died holding all its deliveries, due five minutes ago."""
    message = sending_message(tenant, devices, claimed_until=timezone.now() - timedelta(seconds=1))
    Delivery.objects.filter(message=message).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    return message


def test_herald_beat_resumes_a_stalled_message_a_chunk_per_task_each_queued_once(
    db, database_tasks, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 2
    devices = [make_device(f"tok-{i}", user=f"u{i}") for i in range(5)]
    message = stalled_message(tenant, devices)

    for _ in range(3):  # passes of herald_beat while the sends wait in a busy queue
        recover_stalled(grace=timedelta(0))

    ids = [d.pk for d in devices]
    queued = sorted(send_tasks(message), key=lambda t: -t.priority)
    assert [t.args_kwargs["args"] for t in queued] == [
        [message.pk, ids[0], ids[1]],
        [message.pk, ids[2], ids[3]],
        [message.pk, ids[4], ids[4]],
    ]
    assert [t.priority for t in queued] == [-1, -2, -3], "behind every message's first chunk"


def test_resumed_sends_the_queue_lost_are_queued_again_once_a_claims_time_has_passed(
    db, database_tasks, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 2
    message = stalled_message(tenant, [make_device(f"tok-{i}", user=f"u{i}") for i in range(3)])
    recover_stalled(grace=timedelta(0))
    DBTaskResult.objects.all().delete()  # the queue lost them

    with time_machine.travel(timezone.now() + timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS - 5)):
        recover_stalled(grace=timedelta(0))
    assert send_tasks(message) == []
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS + 5)):
        recover_stalled(grace=timedelta(0))

    assert len(send_tasks(message)) == 2


def test_a_big_messages_chunks_waiting_their_turn_in_a_busy_queue_are_not_queued_twice(
    db, database_tasks, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 2
    for i in range(6):
        make_device(f"big-{i}", user=f"big{i}")
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Big", body="x"))
    services.fan_out(message_id=message.pk)  # three chunks, each its send task queued
    assert len(send_tasks(message)) == 3

    # Other work holds the workers for minutes: herald_beat passes, well past its grace.
    for seconds in (60, 120, settings.DELIVERY_CLAIM_SECONDS - 5):
        with time_machine.travel(timezone.now() + timedelta(seconds=seconds)):
            recover_stalled()
    assert len(send_tasks(message)) == 3, "their tasks are in the queue: none queued again"

    DBTaskResult.objects.all().delete()  # but the queue lost them
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS + 5)):
        recover_stalled()
    assert len(send_tasks(message)) == 3, "resumed once a claim's time has passed"


def test_a_resumed_message_is_queued_a_chunk_per_task_sent_once_each_and_after_a_new_tenants_push(
    sandbox_server, database_tasks, tenant, make_device, settings, inbox
):
    settings.FANOUT_CHUNK_SIZE = 2
    devices = [make_device(f"big-{i}", user=f"big{i}") for i in range(6)]
    big = stalled_message(tenant, devices)
    recover_stalled(grace=timedelta(0))
    small_tenant = Tenant.objects.create(name="Small", tenant_id="small")
    provision_tenant(tenant=small_tenant, sandbox_url=sandbox_server.url)
    make_device("small-1", user="s1", owner=small_tenant)
    small = send_developer_push(
        tenant=small_tenant, app_user_id="s1", spec=MessageInput(title="Small", body="x")
    ).message
    ran = run_queue()  # a pipelining task may take the next range's task: it stays a task each

    last_small = max(i for i, (_, args) in enumerate(ran) if args[0] == small.pk)
    big_sends = [
        (i, args)
        for i, (name, args) in enumerate(ran)
        if name == "send_message_deliveries" and args[0] == big.pk
    ]
    assert last_small < big_sends[0][0], f"the new tenant's push waited for a resumed chunk: {ran}"
    assert [args for _, args in big_sends] == [
        [big.pk, devices[0].pk, devices[1].pk],
        [big.pk, devices[2].pk, devices[3].pk],
        [big.pk, devices[4].pk, devices[5].pk],
    ]
    big.refresh_from_db()
    assert (big.status, big.sent_count) == ("completed", 6)
    assert {token: len(copies) for token, copies in inbox().items()} == {
        **{f"big-{i}": 1 for i in range(6)},
        "small-1": 1,
    }


def test_chunks_no_backend_queued_lose_their_queued_mark_and_herald_beat_queues_them_later(
    db, database_tasks, tenant, make_device, settings, monkeypatch
):
    settings.FANOUT_CHUNK_SIZE = 2
    for i in range(4):
        make_device(f"tok-{i}", user=f"u{i}")
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"))

    with monkeypatch.context() as nothing_listens:
        nothing_listens.setattr(services, "send_due", Signal())
        services.fan_out(message_id=message.pk)  # two chunks, neither queued
        assert not Delivery.objects.filter(message=message, claim="queued").exists()
        recover_stalled(grace=timedelta(0))  # its resumed sends are not queued either
        assert not Delivery.objects.filter(message=message, claim="queued").exists()
        assert send_tasks(message) == []

    recover_stalled(grace=timedelta(0))

    assert len(send_tasks(message)) == 2, "unmarked, so the next pass resumes them at once"
