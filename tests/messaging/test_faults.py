"""FCM and the database misbehaving mid-send: every delivery ends sent or failed with a
reason, none is lost, and none is sent again once it is marked sent.

FCM's faults come from the sandbox itself (random 503/500s, latency, fault tokens) or
from ``faults.FaultyFcm``, a proxy in front of it that answers 503 or 429 in bursts, hangs
past the client's timeout, or cuts connections. Retries wait minutes in production; these
tests run the clock fast by moving due times forward and calling ``recover_stalled``
(what ``herald_beat`` does) instead of waiting out the backoff.

What "sent twice" means: FCM has no idempotency key, so a send whose answer was lost
(a timeout, a connection cut after FCM took the message) may have been delivered while
Herald retries it. Herald never marked those sent; the promise checked here is that a
delivery marked sent is never sent again, and that faults which never reached FCM cause
no duplicate at all.
"""

import signal
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fcm_sandbox.models import SandboxMessage
from messaging import fcm, services
from messaging.models import Delivery, Message
from messaging.services import MessageInput, create_message, recover_stalled
from tests.messaging import workers
from tests.messaging.faults import CLOSE, CLOSE_AFTER_FORWARDING, Answer, FaultyFcm, Hang, every, first

DEVICES = 40


@pytest.fixture
def devices(tenant, make_device):
    return [make_device(f"tok-{i:03}", user=f"u{i}") for i in range(DEVICES)]


@pytest.fixture
def fast(settings):
    """Small chunks and a short FCM timeout, so that a test sees many batches in seconds."""
    settings.FANOUT_CHUNK_SIZE = 15
    settings.SEND_CONCURRENCY = 8
    settings.DELIVERY_RESULT_BATCH = 4
    settings.FCM_HTTP_TIMEOUT = 0.5
    fcm.forget_clients()
    yield settings
    fcm.forget_clients()


def send_to_all(tenant) -> Message:
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))
    return message


def run_fast_clock(message: Message, *, timeout: float = 15) -> Message:
    """Retry until the message is final, moving every retry's due time to now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message.refresh_from_db()
        if message.is_final:
            return message
        message.deliveries.filter(status=Delivery.Status.RETRYING).update(next_attempt_at=timezone.now())
        recover_stalled(grace=timedelta(0))
        time.sleep(0.05)
    raise AssertionError(
        f"message still {message.status} after {timeout}s: "
        f"{list(message.deliveries.values_list('status', 'error_code'))}"
    )


def received() -> dict[str, list[SandboxMessage]]:
    """What the sandbox delivered, by tracking token."""
    copies = defaultdict(list)
    for copy in SandboxMessage.objects.order_by("id"):
        copies[copy.message["data"]["tracking_token"]].append(copy)
    return copies


def assert_settled(message: Message, *, targeted: int, may_repeat: frozenset | set = frozenset()) -> dict:
    """Every delivery sent or failed with a reason, counted right, none lost, none sent after
    being marked sent; deliveries not in `may_repeat` reached FCM exactly once if sent, never
    if failed. Returns the deliveries by status."""
    message.refresh_from_db()
    deliveries = list(message.deliveries.all())
    by_status = defaultdict(list)
    for delivery in deliveries:
        by_status[delivery.status].append(delivery)
    assert message.is_final, message.status
    assert len(deliveries) == targeted == message.targeted_count, "a delivery was lost or invented"
    assert set(by_status) <= {"sent", "failed"}, set(by_status)
    assert all(d.error_code for d in by_status["failed"]), "a failure without a reason"
    assert (message.sent_count, message.failed_count) == (len(by_status["sent"]), len(by_status["failed"]))

    copies = received()
    assert set(copies) <= {d.tracking_token for d in deliveries}
    for delivery in by_status["sent"]:
        got = copies[delivery.tracking_token]
        assert delivery.fcm_message_name in [c.name for c in got], "marked sent, never reached FCM"
        assert not [c for c in got if c.received_at > delivery.sent_at], "sent again after marked sent"
        if delivery.tracking_token not in may_repeat:
            assert len(got) == 1, f"{len(got)} copies of {delivery.tracking_token}"
    for delivery in by_status["failed"]:
        if delivery.tracking_token not in may_repeat:
            assert not copies[delivery.tracking_token], f"failed ({delivery.error_code}) but delivered"
    return by_status


# --- FCM answering 503 and 429 ------------------------------------------------------------


def test_a_burst_of_503s_delays_deliveries_and_loses_none(sandbox, tenant, devices, fast):
    with FaultyFcm(sandbox.url, plan=first(25, Answer(503, retry_after=1))) as proxy:
        fast.FCM_API_URL = proxy.url
        message = send_to_all(tenant)

        retrying = message.deliveries.filter(status="retrying")
        assert retrying.count() == 25
        assert set(retrying.values_list("error_code", flat=True)) == {"UNAVAILABLE"}
        assert min(retrying.values_list("next_attempt_at", flat=True)) > timezone.now()  # Retry-After: 1
        run_fast_clock(message)

    by_status = assert_settled(message, targeted=DEVICES)
    assert len(by_status["sent"]) == DEVICES
    assert sorted(d.attempts for d in by_status["sent"]) == [1] * 15 + [2] * 25
    assert not [d for d in by_status["sent"] if d.error_code]


def test_a_burst_of_429s_waits_as_retry_after_says_then_delivers_everything_once(
    sandbox, tenant, devices, fast
):
    with FaultyFcm(sandbox.url, plan=every(2, Answer(429, retry_after=2), until=30)) as proxy:
        fast.FCM_API_URL = proxy.url
        before = timezone.now()
        message = send_to_all(tenant)

        retrying = message.deliveries.filter(status="retrying")
        assert retrying.count() == 15
        assert set(retrying.values_list("error_code", flat=True)) == {"QUOTA_EXCEEDED"}
        # FCM said when: Retry-After (2 s) plus jitter, not the one-minute floor of a bare 429.
        due = sorted(retrying.values_list("next_attempt_at", flat=True))
        assert due[0] >= before + timedelta(seconds=2)
        assert due[-1] <= timezone.now() + timedelta(seconds=3)
        assert len(set(due)) > 1, "retries are jittered"
        message.refresh_from_db()
        assert message.status == "sending"
        run_fast_clock(message)

    by_status = assert_settled(message, targeted=DEVICES)
    assert len(by_status["sent"]) == DEVICES


def test_random_503s_and_500s_end_each_delivery_sent_or_failed_with_a_reason(sandbox, tenant, devices, fast):
    fast.DELIVERY_MAX_ATTEMPTS = 2
    sandbox.state.configure(failure_rate=0.6, seed=11)

    message = run_fast_clock(send_to_all(tenant))

    by_status = assert_settled(message, targeted=DEVICES)
    assert by_status["sent"] and by_status["failed"], "the seed should give both outcomes"
    assert {d.error_code for d in by_status["failed"]} <= {"UNAVAILABLE", "INTERNAL"}
    assert all(d.attempts == 2 for d in by_status["failed"])
    assert message.status == "completed_with_failures"


def test_a_mix_of_fault_tokens_settles_every_delivery(sandbox, tenant, make_device, fast):
    fast.DELIVERY_MAX_ATTEMPTS = 3
    tokens = (
        [f"ok-{i}" for i in range(10)]
        + [f"sandbox-unavailable-once-{i}" for i in range(5)]
        + [f"sandbox-unavailable-{i}" for i in range(3)]
        + [f"sandbox-quota-1-{i}" for i in range(3)]
        + [f"sandbox-internal-{i}" for i in range(3)]
        + [f"sandbox-unregistered-{i}" for i in range(3)]
    )
    for i, token in enumerate(tokens):
        make_device(token, user=f"u{i}")

    message = run_fast_clock(send_to_all(tenant))

    by_status = assert_settled(message, targeted=len(tokens))
    outcome = {d.device.token: (d.status, d.error_code) for d in message.deliveries.select_related("device")}
    assert sum(1 for status, _ in outcome.values() if status == "sent") == 15
    assert {code for token, (status, code) in outcome.items() if status == "failed"} == {
        "UNAVAILABLE",
        "QUOTA_EXCEEDED",
        "INTERNAL",
        "UNREGISTERED",
    }
    assert len(by_status["failed"]) == 12


# --- FCM too slow, or cutting connections --------------------------------------------------


def test_fcm_answering_after_the_timeout_is_retried_and_each_delivery_marked_sent_once(
    sandbox, tenant, devices, fast
):
    fast.FCM_HTTP_TIMEOUT = 0.3
    sandbox.state.settings.latency_ms = 800  # longer than the timeout, for the first pass only

    message = send_to_all(tenant)

    assert set(message.deliveries.values_list("status", "error_code")) == {("retrying", "TIMEOUT")}
    # The sandbox still delivers what it answers late: the sender cannot know that.
    assert sandbox.handler.wait_idle(10)
    late = {token for token, copies in received().items() if copies}
    sandbox.state.settings.latency_ms = 0
    run_fast_clock(message)

    by_status = assert_settled(message, targeted=DEVICES, may_repeat=late)
    assert len(by_status["sent"]) == DEVICES
    assert all(d.attempts >= 2 for d in by_status["sent"])


def test_a_device_that_always_times_out_fails_with_timeout_and_the_rest_are_sent(
    sandbox, tenant, make_device, fast
):
    fast.FCM_HTTP_TIMEOUT = 0.3
    fast.DELIVERY_MAX_ATTEMPTS = 2
    for i in range(10):
        make_device(f"ok-{i}", user=f"u{i}")
    slow = make_device("sandbox-slow-700-a", user="slow")

    message = run_fast_clock(send_to_all(tenant))
    assert sandbox.handler.wait_idle(10)

    slow_delivery = message.deliveries.get(device=slow)
    by_status = assert_settled(message, targeted=11, may_repeat={slow_delivery.tracking_token})
    assert len(by_status["sent"]) == 10
    slow_delivery.refresh_from_db()
    assert (slow_delivery.status, slow_delivery.error_code, slow_delivery.attempts) == (
        "failed",
        "TIMEOUT",
        2,
    )


@pytest.fixture(params=["urllib3", "curl"])
def transport(request, fast):
    fast.HERALD_FCM_TRANSPORT = request.param
    return request.param


@pytest.mark.parametrize("fault", [CLOSE, Hang(0.8)], ids=["connection-reset", "no-answer"])
def test_a_connection_cut_before_fcm_has_the_message_is_retried_without_duplicates(
    sandbox, tenant, devices, fast, fault, transport
):
    with FaultyFcm(sandbox.url, plan=every(3, fault, until=45)) as proxy:
        fast.FCM_API_URL = proxy.url
        message = send_to_all(tenant)

        failed_first = message.deliveries.filter(status="retrying")
        if transport == "curl":
            # libcurl sends a request again, on a fresh connection, when the reused one it
            # went out on closes before any answer (a cut, or a hang that ends in a close
            # before the timeout fires on a loaded machine): some faults never reach Herald.
            assert 0 < failed_first.count() <= 14
        else:
            assert failed_first.count() == 14
        assert set(failed_first.values_list("error_code", flat=True)) <= {"CONNECTION_ERROR", "TIMEOUT"}
        run_fast_clock(message)

    by_status = assert_settled(message, targeted=DEVICES)
    assert len(by_status["sent"]) == DEVICES


def test_a_connection_cut_after_fcm_took_the_message_repeats_only_that_message(
    sandbox, tenant, devices, fast, transport
):
    with FaultyFcm(sandbox.url, plan=every(4, CLOSE_AFTER_FORWARDING, until=40)) as proxy:
        fast.FCM_API_URL = proxy.url
        message = run_fast_clock(send_to_all(tenant))
        lost_answers = proxy.faulted("close after forwarding")

    by_status = assert_settled(message, targeted=DEVICES, may_repeat=lost_answers)
    assert len(by_status["sent"]) == DEVICES
    copies = received()
    assert {token for token, got in copies.items() if len(got) > 1} == lost_answers
    if transport == "urllib3":
        assert all(len(copies[token]) == 2 for token in lost_answers)
    else:
        # libcurl itself sends a request again (up to five times) when the reused
        # connection it went out on closes before any answer, and Herald retries when
        # libcurl gives up: a lost answer can cost more than one extra copy, all with
        # the delivery's collapse key (the device shows one).
        assert all(len(copies[token]) >= 2 for token in lost_answers)


# --- Real workers ---------------------------------------------------------------------------


def run_beat_fast(message: Message, env: dict, *, timeout: float) -> None:
    """herald_beat --once, after moving due times to now, until the message is final."""
    deadline = time.monotonic() + timeout
    while not Message.objects.get(pk=message.pk).is_final:
        assert time.monotonic() < deadline, "the message did not finish"
        message.deliveries.filter(status="retrying").update(next_attempt_at=timezone.now())
        workers.run("herald_beat", "--once", env=env)
        time.sleep(0.5)


def test_a_worker_process_rides_out_bursts_of_503s_and_429s(sandbox_server, tenant, devices):
    plan = first(30, Answer(503, retry_after=1))
    quota = every(5, Answer(429, retry_after=1), until=60)
    with FaultyFcm(sandbox_server.url, plan=lambda n, t: plan(n, t) or quota(n, t)) as proxy:
        env = workers.worker_env(
            FCM_API_URL=proxy.url,
            FANOUT_CHUNK_SIZE=15,
            SEND_CONCURRENCY=4,
            DELIVERY_RESULT_BATCH=4,
            DELIVERY_RECOVERY_GRACE_SECONDS=0,
        )
        message = send_to_all(tenant)
        worker = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
        try:
            workers.wait_for(
                lambda: (
                    not message.deliveries.filter(status="pending").exists()
                    and message.deliveries.filter(status="sent").exists()
                ),
                timeout=20,
                what="a first pass over every delivery",
            )
            run_beat_fast(message, env, timeout=20)
        finally:
            worker.terminate()
            worker.wait(timeout=10)

    assert proxy.faulted("answer 503") and proxy.faulted("answer 429")
    by_status = assert_settled(message, targeted=DEVICES)
    assert len(by_status["sent"]) == DEVICES


WORKER_APP_NAME = "herald-fault-worker"


def terminate_worker_connections() -> int:
    """What a database restart does to a worker: its backends end under it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            [WORKER_APP_NAME],
        )
        return len(cursor.fetchall())


@pytest.mark.postgres
def test_a_database_connection_killed_mid_send_loses_nothing_and_resends_nothing_marked_sent(
    postgres_only, sandbox_server, tenant, make_device
):
    for i in range(60):
        make_device(f"tok-{i:03}", user=f"u{i}")
    sandbox_server.state.configure(latency_ms=40)
    env = workers.worker_env(
        FCM_API_URL=sandbox_server.url,
        FANOUT_CHUNK_SIZE=30,
        SEND_CONCURRENCY=2,
        DELIVERY_RESULT_BATCH=4,
        DELIVERY_CLAIM_SECONDS=2,
        DELIVERY_RECOVERY_GRACE_SECONDS=0,
    )  # 4 + 2 * 2: see the last assertion
    env["DATABASE_URL"] += f"?application_name={WORKER_APP_NAME}"
    message = send_to_all(tenant)

    worker = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
    replacement = None
    try:
        workers.wait_for(
            lambda: message.deliveries.filter(status="sent").count() >= 8,
            timeout=20,
            what="the worker to mark some deliveries sent",
        )
        assert terminate_worker_connections() >= 1
        marked_sent = {d.tracking_token for d in message.deliveries.filter(status="sent")}
        assert 0 < len(marked_sent) < 60, "the connection must drop mid-message"

        # The worker may die (recording its task's failure needs the connection it lost) or
        # reconnect and carry on; either way its claims run out and herald_beat re-queues them.
        workers.wait_for_claims_to_run_out()
        workers.run("herald_beat", "--once", env=env)
        replacement = workers.start("db_worker", "--no-startup-delay", "--interval", "0.1", env=env)
        workers.wait_for(
            lambda: Message.objects.get(pk=message.pk).is_final, timeout=30, what="the message to finish"
        )
    finally:
        for process in (worker, replacement):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)

    unmarked = {d.tracking_token for d in message.deliveries.all()} - marked_sent
    by_status = assert_settled(message, targeted=60, may_repeat=unmarked)
    assert len(by_status["sent"]) == 60
    copies = received()
    assert all(len(copies[token]) == 1 for token in marked_sent)
    # What the dying worker sent but could not record goes out again; that must be at most
    # the batch it was recording and the sends in flight, not the rest of its chunk.
    repeated = [token for token, got in copies.items() if len(got) > 1]
    assert len(repeated) <= 4 + 2 * 2, f"{len(repeated)} deliveries sent twice"


# --- A worker outliving its claim ----------------------------------------------------------


def test_a_worker_whose_claim_ran_out_neither_sends_nor_counts_its_chunk_again(
    sandbox_server, tenant, make_device
):
    # A worker claims a chunk, then stalls (a pause, a swap storm) past DELIVERY_CLAIM_SECONDS;
    # another worker claims, sends and records the chunk; then the first one wakes up.
    for i in range(5):
        make_device(f"tok-{i}", user=f"u{i}")
    message = send_to_all(tenant)  # queued: no worker runs in this test
    services.fan_out(message_id=message.pk)
    stalled_chunk = services._claim(message, None, None)
    assert len(stalled_chunk) == 5
    ran_out = timezone.now() - timedelta(seconds=1)  # time passes, for the stalled worker too
    message.deliveries.update(claimed_until=ran_out)
    for delivery in stalled_chunk:
        delivery.claimed_until = ran_out
    services.send_deliveries(message_id=message.pk)
    recorded = dict(message.deliveries.values_list("pk", "fcm_message_name"))

    services._send_chunk(message, services.client_for_tenant(tenant), stalled_chunk)

    by_status = assert_settled(message, targeted=5)
    assert len(by_status["sent"]) == 5
    assert dict(message.deliveries.values_list("pk", "fcm_message_name")) == recorded


def test_results_that_arrive_after_the_claim_passed_to_another_worker_are_not_recorded(
    sandbox_server, tenant, make_device
):
    # The claim runs out while the first worker's sends are in flight: their results come
    # back after another worker has claimed, sent and recorded the same deliveries.
    for i in range(5):
        make_device(f"tok-{i}", user=f"u{i}")
    message = send_to_all(tenant)
    services.fan_out(message_id=message.pk)
    stalled_chunk = services._claim(message, None, None)
    message.deliveries.update(claimed_until=timezone.now() - timedelta(seconds=1))
    services.send_deliveries(message_id=message.pk)
    recorded = dict(message.deliveries.values_list("pk", "fcm_message_name"))

    late = fcm.FcmError("UNAVAILABLE", "late", status=503)
    services._record(
        message,
        [(d, "projects/p/messages/late", None) for d in stalled_chunk[:3]]
        + [(d, None, late) for d in stalled_chunk[3:]],
    )

    message.refresh_from_db()
    assert (message.targeted_count, message.sent_count, message.failed_count) == (5, 5, 0)
    assert set(message.deliveries.values_list("status", flat=True)) == {"sent"}
    assert dict(message.deliveries.values_list("pk", "fcm_message_name")) == recorded


# --- A fan-out cut short --------------------------------------------------------------------


def test_a_fan_out_resumed_after_a_crash_counts_every_delivery_once(
    sandbox_server, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 5
    devices = [make_device(f"tok-{i:02}", user=f"u{i}") for i in range(12)]
    message = send_to_all(tenant)  # queued: no worker runs in this test
    # The worker that died had fanned out the first chunk ...
    Delivery.objects.bulk_create([Delivery(message=message, device=d) for d in devices[:5]])
    Message.objects.filter(pk=message.pk).update(targeted_count=5)
    # ... and before herald_beat resumed the fan-out, one of those devices went away.
    devices[2].deactivate(reason="UNREGISTERED")

    services.fan_out(message_id=message.pk)
    services.send_deliveries(message_id=message.pk)

    assert_settled(message, targeted=12)
