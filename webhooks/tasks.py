"""Background work of the webhooks app, on its own queue: posting never holds up sending."""

from django.core.cache import cache
from django.tasks import task

from webhooks import services

QUEUE = "webhooks"


@task(queue_name=QUEUE)
def deliver_webhooks(endpoint_id: int) -> int:
    return services.deliver_endpoint(endpoint_id=endpoint_id)


@task(queue_name=QUEUE)
def webhooks_beat_task() -> dict:
    """Resume due retries and lost work; prune old rows at most once an hour."""
    counts = {"endpoints_resumed": services.resume_due()}
    if cache.add("webhooks:pruned", 1, timeout=3600):
        counts.update(services.prune())
    return counts


def enqueue_delivery(endpoint_id: int, *, run_after=None) -> None:
    """Queue a sender for the endpoint (after run_after, where the backend can defer;
    elsewhere herald_beat's pass picks the retry up when it is due)."""
    task_ = deliver_webhooks
    if run_after is not None:
        if not task_.get_backend().supports_defer:
            return
        task_ = task_.using(run_after=run_after)
    task_.enqueue(endpoint_id)
