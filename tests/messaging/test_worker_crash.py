"""A worker killed mid-chunk loses nothing and never resends what it had marked sent."""

import signal
from collections import Counter, defaultdict

from django.utils import timezone

from fcm_sandbox.models import SandboxMessage
from messaging.models import Delivery, Message
from messaging.services import MessageInput, create_message
from tests.messaging import workers


def kill_a_worker_mid_send(env: dict, *, once_sent: int) -> None:
    """Start a db_worker and SIGKILL it once `once_sent` deliveries are marked sent."""
    worker = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
    try:
        workers.wait_for(
            lambda: Delivery.objects.filter(status="sent").count() >= once_sent,
            timeout=60,
            what="the worker to mark some deliveries sent",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()


def finish_with_a_new_worker(env: dict, message: Message) -> None:
    """Let the dead worker's claims run out (without waiting for them), run herald_beat once
    (it re-queues what the dead worker held) and a new worker until the message is final."""
    Delivery.objects.exclude(claim="").update(claimed_until=timezone.now())
    workers.run("herald_beat", "--once", env=env)
    replacement = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
    try:
        workers.wait_for(
            lambda: Message.objects.get(pk=message.pk).is_final, timeout=90, what="the message to finish"
        )
    finally:
        replacement.terminate()
        replacement.wait(timeout=10)


def test_a_worker_killed_mid_chunk_loses_nothing_and_resends_nothing_marked_sent(
    sandbox_server, tenant, make_device
):
    devices = [make_device(f"tok-{i:03}", user=f"u{i}") for i in range(60)]
    sandbox_server.state.configure(latency_ms=40)
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))
    env = workers.worker_env(
        FCM_API_URL=sandbox_server.url,
        FANOUT_CHUNK_SIZE=30,
        SEND_CONCURRENCY=2,
        DELIVERY_RESULT_BATCH=4,
        DELIVERY_CLAIM_SECONDS=2,
        DELIVERY_RECOVERY_GRACE_SECONDS=0,
    )

    kill_a_worker_mid_send(env, once_sent=8)
    sent_before_kill = {d.tracking_token for d in Delivery.objects.filter(status="sent")}
    assert 0 < len(sent_before_kill) < len(devices), "the kill must land mid-message"

    finish_with_a_new_worker(env, message)

    message.refresh_from_db()
    assert message.status == "completed"
    assert (message.targeted_count, message.sent_count, message.failed_count) == (60, 60, 0)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    received = Counter(m.message["data"]["tracking_token"] for m in SandboxMessage.objects.all())
    assert set(received) == {d.tracking_token for d in Delivery.objects.all()}
    assert all(received[token] == 1 for token in sent_before_kill)


def test_a_worker_killed_mid_send_sends_again_at_most_its_unrecorded_sends_each_replacing_its_copy(
    sandbox_server, tenant, make_device
):
    devices = [make_device(f"tok-{i:03}", user=f"u{i}") for i in range(120)]
    sandbox_server.state.configure(latency_ms=30)
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))
    cap = 6
    env = workers.worker_env(
        FCM_API_URL=sandbox_server.url,
        FANOUT_CHUNK_SIZE=120,
        SEND_CONCURRENCY=32,
        DELIVERY_MAX_UNRECORDED=cap,
        DELIVERY_RESULT_BATCH=50,
        DELIVERY_RESULT_INTERVAL=0.05,
        DELIVERY_RECOVERY_GRACE_SECONDS=0,
    )

    kill_a_worker_mid_send(env, once_sent=30)
    assert Delivery.objects.filter(status="sent").count() < len(devices), "the kill must land mid-message"

    finish_with_a_new_worker(env, message)

    message.refresh_from_db()
    assert (message.status, message.sent_count) == ("completed", len(devices))
    copies = defaultdict(list)
    for received in SandboxMessage.objects.all():
        copies[received.message["data"]["tracking_token"]].append(received.message)
    twice = {token: got for token, got in copies.items() if len(got) > 1}
    assert len(twice) <= cap, f"{len(twice)} devices got the push twice"
    for token, got in twice.items():
        assert {m["android"]["collapseKey"] for m in got} == {token}, "a resend replaces its first copy"
        assert {m["apns"]["headers"]["apns-collapse-id"] for m in got} == {token}
