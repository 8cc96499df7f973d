"""Background work, through Django's tasks API. Each task is a thin call into services.

The one place work is queued: services announce it (`services.fan_out_due`,
`services.send_due`) and the receivers at the end of this module enqueue the tasks, so
imports run one way, tasks -> services. MessagingConfig.ready() imports this module.
"""

from django.dispatch import receiver
from django.tasks import task
from django.tasks.base import TASK_MIN_PRIORITY

from messaging import retention, services, variants


@task()
def fan_out_message(message_id: int, after_device_id: int | None = None, first_chunk: int = 0) -> None:
    services.fan_out(message_id=message_id, after_device_id=after_device_id, first_chunk=first_chunk)


@task()
def send_message_deliveries(
    message_id: int, first_device_id: int | None = None, last_device_id: int | None = None
) -> None:
    services.send_deliveries(
        message_id=message_id, first_device_id=first_device_id, last_device_id=last_device_id
    )


@task()
def decide_ab_winners() -> int:
    return variants.decide_due_winners()


@task()
def recover_stalled_work() -> dict:
    return services.recover_stalled()


@task()
def apply_retention_task() -> dict:
    """Retention: herald_beat queues this once a day."""
    return retention.apply_retention_everywhere()


def _prepared(task_, run_after, rank: int):
    """The task to run after `run_after` at the priority of `rank`, or None where the backend
    cannot defer (the immediate backend of tests): there `herald_beat` picks the work up
    when it is due.

    Rank 0 (a message's first chunk) keeps the default priority; its k-th chunk ranks k,
    one priority lower each (down to TASK_MIN_PRIORITY), so a worker takes a new message's
    first chunk before the second chunk of a big one, whoever queued first. Backends
    without priorities (RQ) run FIFO; there the bounded fan-out tasks keep a new message
    a few chunks behind a big one at most.
    """
    backend = task_.get_backend()
    if run_after is not None:
        if not backend.supports_defer:
            return None
        task_ = task_.using(run_after=run_after)
    if rank and backend.supports_priority:
        task_ = task_.using(priority=max(TASK_MIN_PRIORITY, -rank))
    return task_


def enqueue_fan_out(
    message_id: int, *, after_device_id=None, first_chunk: int = 0, run_after=None, rank: int = 0
) -> bool:
    if task_ := _prepared(fan_out_message, run_after, rank):
        if after_device_id is None:
            task_.enqueue(message_id)
        else:
            task_.enqueue(message_id, after_device_id, first_chunk)
        return True
    return False


def enqueue_send(
    message_id: int, *, first_device_id=None, last_device_id=None, run_after=None, rank: int = 0
) -> bool:
    if task_ := _prepared(send_message_deliveries, run_after, rank):
        task_.enqueue(message_id, first_device_id, last_device_id)
        return True
    return False


@receiver(services.fan_out_due, dispatch_uid="herald-enqueue-fan-out")
def _fan_out_due(
    sender,
    *,
    message_id: int,
    after_device_id=None,
    first_chunk: int = 0,
    run_after=None,
    rank: int = 0,
    **kwargs,
) -> bool:
    return enqueue_fan_out(
        message_id, after_device_id=after_device_id, first_chunk=first_chunk, run_after=run_after, rank=rank
    )


@receiver(services.send_due, dispatch_uid="herald-enqueue-send")
def _send_due(
    sender,
    *,
    message_id: int,
    first_device_id=None,
    last_device_id=None,
    run_after=None,
    rank: int = 0,
    **kwargs,
) -> bool:
    return enqueue_send(
        message_id,
        first_device_id=first_device_id,
        last_device_id=last_device_id,
        run_after=run_after,
        rank=rank,
    )


@receiver(services.winner_due, dispatch_uid="herald-enqueue-winner")
def _winner_due(sender, *, message_id: int, run_after=None, **kwargs) -> None:
    # Any due test is decided, not just this one: the task needs no message of its own.
    if task_ := _prepared(decide_ab_winners, run_after, 0):
        task_.enqueue()
