"""Background work of the webhooks app, on its own queue: posting never holds up sending."""

from django.tasks import task

from webhooks import services

QUEUE = "webhooks"


@task(queue_name=QUEUE)
def deliver_webhooks(endpoint_id: int) -> int:
    return services.deliver_endpoint(endpoint_id=endpoint_id)


@task(queue_name=QUEUE)
def prune_webhooks() -> dict:
    """Delete old delivered batches and attempts: herald_beat queues this once an hour."""
    return services.prune()


def enqueue_delivery(endpoint_id: int, *, run_after=None) -> None:
    """Queue a sender for the endpoint (after run_after, where the backend can defer;
    elsewhere herald_beat's pass picks the retry up when it is due)."""
    task_ = deliver_webhooks
    if run_after is not None:
        if not task_.get_backend().supports_defer:
            return
        task_ = task_.using(run_after=run_after)
    task_.enqueue(endpoint_id)
