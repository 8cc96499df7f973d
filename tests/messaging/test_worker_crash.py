"""A worker killed mid-chunk loses nothing and never resends what it had marked sent."""

import signal
from collections import Counter

from fcm_sandbox.models import SandboxMessage
from messaging.models import Delivery, Message
from messaging.services import MessageInput, create_message
from tests.messaging import workers


def test_a_worker_killed_mid_chunk_loses_nothing_and_resends_nothing_marked_sent(
        sandbox_server, tenant, make_device):
    devices = [make_device(f"tok-{i:03}", user=f"u{i}") for i in range(60)]
    sandbox_server.state.configure(latency_ms=40)
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))
    env = workers.worker_env(
        FCM_API_URL=sandbox_server.url, FANOUT_CHUNK_SIZE=30, SEND_CONCURRENCY=2,
        DELIVERY_RESULT_BATCH=4, DELIVERY_CLAIM_SECONDS=2, DELIVERY_RECOVERY_GRACE_SECONDS=0)

    worker = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
    try:
        workers.wait_for(lambda: Delivery.objects.filter(status="sent").count() >= 8, timeout=60,
                         what="the worker to mark some deliveries sent")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    sent_before_kill = set(Delivery.objects.filter(status="sent").values_list("tracking_token", flat=True))
    assert 0 < len(sent_before_kill) < len(devices), "the kill must land mid-message"

    workers.wait_for_claims_to_run_out()
    workers.run("herald_beat", "--once", env=env)  # re-queues what the dead worker held
    replacement = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
    try:
        workers.wait_for(lambda: Message.objects.get(pk=message.pk).is_final, timeout=90,
                         what="the message to finish")
    finally:
        replacement.terminate()
        replacement.wait(timeout=10)

    message.refresh_from_db()
    assert message.status == "completed"
    assert (message.targeted_count, message.sent_count, message.failed_count) == (60, 60, 0)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    received = Counter(m.message["data"]["tracking_token"] for m in SandboxMessage.objects.all())
    assert set(received) == set(Delivery.objects.values_list("tracking_token", flat=True))
    assert all(received[token] == 1 for token in sent_before_kill)
