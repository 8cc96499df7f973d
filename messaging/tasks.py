"""Background work, through Django's tasks API. Each task is a thin call into services.

The one place work is queued: services announce it (`services.fan_out_due`,
`services.send_due`) and the receivers at the end of this module enqueue the tasks, so
imports run one way, tasks -> services. MessagingConfig.ready() imports this module.
"""

import json

from django.db import connections, router
from django.dispatch import receiver
from django.tasks import task
from django.tasks.base import TASK_MIN_PRIORITY, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

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


@receiver(services.queued_work_wanted, dispatch_uid="herald-take-queued-work")
def _queued_work_wanted(sender, *, message_id: int, rank=None, **kwargs) -> services.QueuedWork | None:
    return take_queued_work(message_id, rank=rank)


_TAKEN_TASKS = {
    send_message_deliveries.module_path: "send",
    fan_out_message.module_path: "fan_out",
}


def take_queued_work(message_id: int, *, rank: int | None = None) -> services.QueuedWork | None:
    """Take the message's own send or fan-out task off the queue, for the send task already
    sending it, when it is the task a worker would take next: the first ready task of the
    send tasks' queue, by db_worker's own order (priority, then run_after, then age).
    Anything that ranks above it (another message's first chunk, say) is left to the
    workers, and so is everything on backends other than the database's.

    One statement: the row is locked with SKIP LOCKED (a worker taking it meanwhile keeps
    it) and marked done, so no worker runs it again; `task_started` and `task_finished`
    go out as for a task a worker ran, for the task log.

    `rank`: the send task holds a chunk of that rank that was never queued (a fan-out it
    ran handed it over). The queue's first task is read (one statement): when nothing in
    the queue would run before that chunk, had it been queued now (nothing of a higher
    priority, nor another message's of the same), the answer is NOTHING_AHEAD (send it);
    when it is this message's own, it is taken as above; otherwise None.
    """
    task_ = send_message_deliveries
    try:
        from django_tasks_db import DatabaseBackend
        from django_tasks_db.models import DBTaskResult, get_date_max
    except ImportError:  # pragma: no cover - the database backend is a dependency
        return None
    backend = task_.get_backend()
    if not isinstance(backend, DatabaseBackend):
        return None
    connection = connections[router.db_for_write(DBTaskResult)]
    table = connection.ops.quote_name(DBTaskResult._meta.db_table)
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    if connection.vendor == "postgresql":
        lock, ours = "FOR UPDATE SKIP LOCKED", "args_kwargs -> 'args' -> 0 = %s::jsonb"
    else:
        lock, ours = "", "json_extract(args_kwargs, '$.args[0]') = %s"
    message = json.dumps(message_id) if connection.vendor == "postgresql" else message_id
    first_ready = f"""
            SELECT id FROM {table}
            WHERE status = %s AND backend_name = %s AND queue_name = %s
              AND (run_after = %s OR run_after <= %s)
            ORDER BY priority DESC, run_after, enqueued_at
            LIMIT 1 {lock}
    """  # noqa: S608
    first_ready_params = [
        TaskResultStatus.READY,
        task_.backend,
        task_.queue_name,
        adapt(get_date_max()),
        adapt(now),
    ]
    if rank is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT priority, task_path IN (%s, %s) AND {ours} FROM {table} "  # noqa: S608
                f"WHERE id = ({first_ready})",
                [*_TAKEN_TASKS, message, *first_ready_params],
            )
            head = cursor.fetchone()
        floor = max(TASK_MIN_PRIORITY, -rank)  # the priority the chunk would have been queued at
        if head is None or head[0] < floor or (head[0] == floor and head[1]):
            return services.NOTHING_AHEAD
        if not head[1]:
            return None
    sql = f"""
        UPDATE {table} SET status = %s, started_at = %s, finished_at = %s, return_value = %s
        WHERE id = ({first_ready}) AND status = %s AND task_path IN (%s, %s) AND {ours}
        RETURNING *
    """  # noqa: S608
    params = [
        TaskResultStatus.SUCCESSFUL,
        adapt(now),
        adapt(now),
        json.dumps({"taken_by_running_send": True}),
        *first_ready_params,
        TaskResultStatus.READY,
        *_TAKEN_TASKS,
        message,
    ]
    taken = list(DBTaskResult.objects.using(connection.alias).raw(sql, params))
    if not taken:
        return None
    row = taken[0]
    row.status = TaskResultStatus.RUNNING
    started = row.task_result
    task_started.send(sender=type(backend), task_result=started)

    def done() -> None:
        row.status = TaskResultStatus.SUCCESSFUL
        task_finished.send(sender=type(backend), task_result=row.task_result)

    return services.QueuedWork(
        task=_TAKEN_TASKS[row.task_path], args=tuple(row.args_kwargs["args"]), done=done
    )
