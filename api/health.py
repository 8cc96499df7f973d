"""GET /healthz: can Herald reach what it needs? For load balancers and monitors."""

import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# A task waiting longer than this means no worker is taking work.
STUCK_AFTER = timedelta(minutes=5)


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        result = {"ok": True, **(check() or {})}
    except Exception as exc:  # a health check reports failures, it does not raise them
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round(1000 * (time.perf_counter() - started), 1)
    return result


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis():
    import redis

    redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()


def _tasks():
    if settings.TASK_BACKEND == "database":
        from django_tasks_db.models import DBTaskResult, get_date_max

        ready = DBTaskResult.objects.ready()  # due now: enqueued, and run_after passed
        oldest = ready.order_by("enqueued_at").values_list("enqueued_at", "run_after").first()
        waiting = 0.0
        if oldest:
            due_since = oldest[0] if oldest[1] == get_date_max() else max(oldest)
            waiting = (timezone.now() - due_since).total_seconds()
        if waiting > STUCK_AFTER.total_seconds():
            raise RuntimeError(f"the oldest ready task has waited {waiting:.0f}s: is a worker running?")
        return {"backend": "database", "ready": ready.count(), "oldest_ready_seconds": round(waiting)}
    if settings.TASK_BACKEND == "rq":
        import django_rq

        return {"backend": "rq", "queued": django_rq.get_queue("default").count}
    return {"backend": settings.TASK_BACKEND}


@never_cache
@require_GET
def healthz(request):
    checks = {"database": _timed(_database), "tasks": _timed(_tasks)}
    if settings.REDIS_URL:
        checks["redis"] = _timed(_redis)
    healthy = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", "checks": checks},
                        status=200 if healthy else 503)
