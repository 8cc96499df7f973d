"""GET /healthz: can Herald reach what it needs? For load balancers and monitors.

200 "ok": everything answers. 200 "degraded": Redis does not answer, or a check an app
registered fails (queued ingestion's backlog is too old, devices/ingest.py); the API still
serves (rate limits fall back to each process's memory), so a load balancer must keep sending
traffic. 503 "unhealthy": the database or the task queue fails, and Herald cannot do its job.

The answer is public, so a failure says only which check failed and a short known reason;
hosts, ports and exception text go to the log (and to a signed-in superuser).
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from api import throttling

log = logging.getLogger("herald.health")

# A task waiting longer than this means no worker is taking work.
STUCK_AFTER = timedelta(minutes=5)


class Unhealthy(Exception):
    """A failure whose message is Herald's own words, safe to show anyone."""


def _timed(name: str, check, *, details: bool) -> dict:
    started = time.perf_counter()
    try:
        result = {"ok": True, **(check() or {})}
    except Exception as exc:  # a health check reports failures, it does not raise them
        log.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
        result = {"ok": False, "error": str(exc) if isinstance(exc, Unhealthy) else "unavailable"}
        if details:
            result["detail"] = f"{type(exc).__name__}: {exc}"[:300]
    result["ms"] = round(1000 * (time.perf_counter() - started), 1)
    return result


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis():
    return throttling.redis_health()


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
            raise Unhealthy(f"the oldest ready task has waited {waiting:.0f}s: is a worker running?")
        return {"backend": "database", "ready": ready.count(), "oldest_ready_seconds": round(waiting)}
    if settings.TASK_BACKEND == "rq":
        import django_rq

        return {"backend": "rq", "queued": django_rq.get_queue("default").count}
    return {"backend": settings.TASK_BACKEND}


# Checks the apps above register (see register_check): name -> (check, when it applies).
_extra_checks: dict = {}


def register_check(name: str, check, *, applies=lambda: True) -> None:
    """Add a check that /healthz runs when applies() says so. It returns a dict of figures or
    raises (Unhealthy with a public reason); its failure makes the answer "degraded", never
    "unhealthy": the API still serves."""
    _extra_checks[name] = (check, applies)


def _is_superuser(request) -> bool:
    """Whether the caller may see failure details; never fails, even with the database down."""
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False
    try:
        return bool(request.user.is_authenticated and request.user.is_superuser)
    except Exception:  # the session lives in the database, which may be what is failing
        return False


@never_cache
@require_GET
def healthz(request):
    details = _is_superuser(request)
    checks = {
        "database": _timed("database", _database, details=details),
        "tasks": _timed("tasks", _tasks, details=details),
    }
    if settings.REDIS_URL:
        checks["redis"] = _timed("redis", _redis, details=details)
    for name, (check, applies) in _extra_checks.items():
        if applies():
            checks[name] = _timed(name, check, details=details)
    essential = checks["database"]["ok"] and checks["tasks"]["ok"]
    status = "unhealthy" if not essential else "ok" if all(c["ok"] for c in checks.values()) else "degraded"
    return JsonResponse({"status": status, "checks": checks}, status=200 if essential else 503)
