"""Herald's Prometheus metrics: their definitions, the request middleware and GET /metrics.

Every counter and histogram an operator scrapes is defined here, and the rooms above
record into them with one call where the thing happens (``metrics.EVENTS_RECORDED.inc()``).
This module imports no app: gauges that need the database (queue depth, messages by
status) are collectors the app that owns the tables registers with
``register_scrape_collector``; they run at scrape time.

Multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` in the environment (an empty
directory, shared by every gunicorn worker and task worker of the machine, wiped before
they start) each process writes its counts to files there and a scrape adds them up.
Without it, a scrape sees the counts of the process that answers it.

Label cardinality is bounded: endpoints are route names (not raw paths), error codes
come from FCM's short list, and tenants appear only with ``METRICS_TENANT_LABEL=true``
(empty otherwise, which Prometheus reads as no label at all).
"""

import functools
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from api import throttling

log = logging.getLogger("herald.metrics")

# Seconds: API answers and FCM round trips both live between a millisecond and a few seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

API_REQUESTS = Counter(
    "herald_api_requests",
    "HTTP requests answered, by route name, method and status.",
    ["endpoint", "method", "status"],
)
API_LATENCY = Histogram(
    "herald_api_request_duration_seconds",
    "Time to answer an HTTP request, by route name and method.",
    ["endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_RECORDED = Counter(
    "herald_events_recorded",
    "Events accepted by POST /events (client retries included).",
)
EVENTS_QUEUED = Counter(
    "herald_events_queued",
    "Events POST /events appended to the ingest stream (EVENTS_INGEST=queue); herald_events_recorded "
    "counts them when herald_ingest stores them (a client's retry of a stored event is not counted again).",
)
EVENTS_QUEUE_FULL = Counter(
    "herald_events_queue_full",
    "Events POST /events wrote directly because the ingest stream held EVENTS_INGEST_MAX_QUEUED "
    "entries (EVENTS_INGEST=queue): no writer has kept up for a long while.",
)
TOKEN_ROTATIONS = Counter("herald_token_rotations", "FCM token swaps stored by POST /devices/refresh-token.")
DELIVERIES = Counter(
    "herald_deliveries",
    "Deliveries finished, by outcome (sent, failed) and FCM error code.",
    ["outcome", "error_code", "tenant"],
)
RETRIES_SCHEDULED = Counter(
    "herald_delivery_retries_scheduled",
    "Deliveries put back for another attempt, by FCM error code.",
    ["error_code", "tenant"],
)
FCM_LATENCY = Histogram(
    "herald_fcm_request_duration_seconds",
    "Time of one HTTP request to FCM's messages:send, by outcome.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
ACCESS_TOKEN_FETCHES = Counter(
    "herald_fcm_access_token_fetches",
    "OAuth access tokens fetched for FCM, by outcome (ok or an error code).",
    ["outcome"],
)
WEBHOOK_EVENTS_RECORDED = Counter(
    "herald_webhook_events_recorded",
    "Webhook events written to the outbox (one per subscribed endpoint), by event type.",
    ["type", "tenant"],
)
WEBHOOK_ATTEMPTS = Counter(
    "herald_webhook_attempts",
    "POSTs to tenants' webhook endpoints, by outcome (ok, or the error class the attempt log records).",
    ["outcome", "tenant"],
)
WEBHOOK_LATENCY = Histogram(
    "herald_webhook_request_duration_seconds",
    "Time of one webhook POST that went out, by outcome (ok or the error class).",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)


def tenant_label(tenant_id: str) -> str:
    """The tenant label's value: the tenant id when METRICS_TENANT_LABEL is on, else empty."""
    return tenant_id if settings.METRICS_TENANT_LABEL else ""


def record_deliveries(
    *,
    tenant_id: str,
    sent: int = 0,
    failed: Mapping[str, int] | None = None,
    retrying: Mapping[str, int] | None = None,
) -> None:
    """Count a batch of send results: how many were sent, and how many failed and were
    scheduled for a retry, by error code ({"UNREGISTERED": 3})."""
    tenant = tenant_label(tenant_id)
    if sent:
        DELIVERIES.labels("sent", "", tenant).inc(sent)
    for code, n in (failed or {}).items():
        if n:
            DELIVERIES.labels("failed", code or "UNKNOWN", tenant).inc(n)
    for code, n in (retrying or {}).items():
        if n:
            RETRIES_SCHEDULED.labels(code or "UNKNOWN", tenant).inc(n)


def timed_fcm_request(func: Callable) -> Callable:
    """Decorate the function that makes one HTTP request to FCM: time it, labelled with
    the HTTP status it returned or the error code it raised."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        outcome = "error"
        try:
            response = func(*args, **kwargs)
            outcome = str(getattr(response, "status", "ok"))
            return response
        except Exception as exc:
            outcome = str(getattr(exc, "code", type(exc).__name__))
            raise
        finally:
            FCM_LATENCY.labels(outcome).observe(time.perf_counter() - started)

    return wrapper


def counted_token_fetch(func: Callable) -> Callable:
    """Decorate the function that fetches an access token: count it, by outcome."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            ACCESS_TOKEN_FETCHES.labels(str(getattr(exc, "code", type(exc).__name__))).inc()
            raise
        ACCESS_TOKEN_FETCHES.labels("ok").inc()
        return result

    return wrapper


# --- Requests -----------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Count and time every request by the name of the route that served it.

    Route names, never raw paths: /api/v1/messages/1 and /api/v1/messages/2 are one
    series ("message"); a path no route matches is "unmatched"; the admin's pages are
    "admin". Streamed answers (CSV exports) are timed to their first byte.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        # (endpoint, method, status) → its histogram and counter: labels() takes a lock and
        # builds the series' key on every call, twice the cost of counting itself.
        self._series: dict[tuple[str, str, int], tuple] = {}

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is None:
            endpoint = "unmatched"
        elif match.namespace:
            endpoint = match.namespaces[0]
        else:
            endpoint = match.url_name or "unnamed"
        method = request.method if request.method in _METHODS else "other"
        key = (endpoint, method, response.status_code)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= 1000:  # bounded as the labels are; start over rather than grow
                self._series.clear()
            series = self._series[key] = (
                API_LATENCY.labels(endpoint, method),
                API_REQUESTS.labels(endpoint, method, str(response.status_code)),
            )
        series[0].observe(time.perf_counter() - started)
        series[1].inc()
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# --- Scraping -----------------------------------------------------------------------------

_scrape_collectors: list = []


def register_scrape_collector(collector) -> None:
    """Add a collector (an object with ``collect()``) that every scrape runs, once per scrape.

    For gauges read from the database at scrape time: in multiprocess mode they must not
    be counted once per process, so they live beside the aggregated counters, not in them.
    """
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


class DatabaseGauges:
    """A scrape-time collector of gauges read from the database, for an app to subclass:
    ``read()`` returns the metric families; ``up_name`` is a gauge that says whether it
    could (a database error leaves only that gauge, at 0, never a failed scrape)."""

    up_name = ""
    up_help = ""

    def read(self) -> list:
        raise NotImplementedError

    def collect(self):
        up = GaugeMetricFamily(self.up_name, self.up_help)
        try:
            families = self.read()
        except DatabaseError as exc:
            log.warning(
                "metrics: could not read gauges from the database",
                extra={"gauges": self.up_name, "error": type(exc).__name__},
            )
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]


class _ThisProcess:
    """Without multiprocess mode: what this process counted (and its process metrics)."""

    def collect(self):
        return REGISTRY.collect()


def scrape_registry() -> CollectorRegistry:
    """A registry with everything one scrape shows."""
    registry = CollectorRegistry()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_ThisProcess())
    for collector in _scrape_collectors:
        registry.register(collector)
    return registry


def _client_allowed(request) -> bool:
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not networks:
        return True
    try:
        # The client address as the rate limits see it (NUM_PROXIES decides whether to
        # believe X-Forwarded-For).
        address = ipaddress.ip_address(throttling.client_ip(request).strip())
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def _token_ok(request) -> bool:
    if not settings.METRICS_TOKEN:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.METRICS_TOKEN.encode()
    )


def _error(status: int, code: str, detail: str, **headers) -> JsonResponse:
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@never_cache
@require_GET
def metrics_view(request):
    """GET /metrics: the Prometheus text format (or OpenMetrics, if the scraper asks).

    Off (404, as if it did not exist) unless METRICS_TOKEN or METRICS_ALLOWED_NETWORKS is
    set; each one that is set must be satisfied.
    """
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETWORKS:
        return _error(404, "not_found", f"No endpoint at {request.path}.")
    if not _client_allowed(request):
        return _error(403, "forbidden", "This address may not read the metrics.")
    if not _token_ok(request):
        return _error(
            401,
            "unauthorized",
            "A valid metrics token is needed (Authorization: Bearer …).",
            WWW_Authenticate='Bearer realm="metrics"',
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)


def document_metrics_endpoint(result, generator, request, public):
    """drf-spectacular postprocessing hook: describe GET /metrics, a plain Django view."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    result.setdefault("paths", {})["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": (
                "Counters and histograms of every Herald process, in the Prometheus text format "
                "(OpenMetrics when the scraper asks for it). Off (404) unless the operator sets "
                "METRICS_TOKEN (send it as `Authorization: Bearer`) or METRICS_ALLOWED_NETWORKS; "
                "see docs/operations.md for what each metric means."
            ),
            "tags": ["operations"],
            "security": [{"metricsToken": []}, {}],
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": {
                    "description": "METRICS_TOKEN is set and the request did not carry it.",
                    "content": error,
                },
                "403": {
                    "description": "The client's address is outside METRICS_ALLOWED_NETWORKS.",
                    "content": error,
                },
                "404": {
                    "description": "Metrics are off (neither METRICS_TOKEN nor METRICS_ALLOWED_NETWORKS "
                    "is set).",
                    "content": error,
                },
            },
        }
    }
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["metricsToken"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's METRICS_TOKEN.",
    }
    return result
