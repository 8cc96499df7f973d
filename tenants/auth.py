"""Turning a request into a tenant.

App endpoints carry ``tenant_id`` and ``api_key`` in the JSON body, as SmartAppPush's
do; server endpoints carry a server key in ``X-Server-Key`` or
``Authorization: Bearer``. Either way the caller gets back the ApiKey (and through it
the Tenant) or a 401 that does not say which half was wrong.

Body-key endpoints (`AppEndpoint`) answer CORS: browsers call them, and because the key is
in the body, never in a cookie, any origin may. The busiest of them (/events, the token refresh)
answer a plainly valid request without DRF (see `AppEndpoint.plain_prepare`).
"""

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions
from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from api import throttling
from api.errors import ApiError, body_object, parse_json
from api.throttling import PerKeyThrottle, PerTenantIpThrottle
from tenants.models import ApiKey, hash_key

INVALID = "Invalid tenant_id or api_key."


class KeyCache:
    """Active keys by hash, remembered by this process for API_KEY_CACHE_SECONDS.

    Every app request names a key, and reading it (with its tenant) through the ORM cost
    more than the rest of authentication together. A remembered key is trusted until its
    entry is API_KEY_CACHE_SECONDS old and then read again, so a revoked key or a
    deactivated tenant is refused by every process within that many seconds (5 by
    default; 0 turns the cache off). Only keys that were accepted are remembered: a new
    key works at once, and unknown keys are looked up every time.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._entries: dict[str, tuple[float, ApiKey]] = {}

    def get(self, key_hash: str) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if self.clock() >= entry[0]:
            self._entries.pop(key_hash, None)
            return None
        return entry[1]

    def put(self, key_hash: str, key: ApiKey, *, ttl: float) -> None:
        if len(self._entries) >= 10_000:  # more keys than any deployment has: start over
            self._entries.clear()
        self._entries[key_hash] = (self.clock() + ttl, key)

    def clear(self) -> None:
        self._entries.clear()


keys = KeyCache()


def find_key(raw_key: str) -> ApiKey | None:
    """The active key with this value, or None (revoked, unknown, or tenant inactive).

    Remembered for API_KEY_CACHE_SECONDS (see KeyCache)."""
    if not raw_key or len(raw_key) > 200:
        return None
    key_hash = hash_key(raw_key)
    key = keys.get(key_hash)
    if key is None:
        key = ApiKey.objects.active().select_related("tenant").filter(key_hash=key_hash).first()
        ttl = settings.API_KEY_CACHE_SECONDS
        if key is not None and ttl > 0:
            keys.put(key_hash, key, ttl=ttl)
    return key


def remembered_key(raw_key: str) -> ApiKey | None:
    """The active key with this value if this process remembers it (see KeyCache), else None:
    never a database query."""
    if not raw_key or len(raw_key) > 200:
        return None
    return keys.get(hash_key(raw_key))


class BodyKeyAuthentication(authentication.BaseAuthentication):
    """``tenant_id`` + ``api_key`` in the JSON body. App and server keys both work."""

    def authenticate(self, request):
        data = body_object(request)
        # A missing or malformed field is the client's bug, a 400 naming it (as for every
        # other field); only a well-formed pair that matches no key is a 401.
        for name in ("tenant_id", "api_key"):
            if data.get(name) is None:
                raise ApiError(f"{name}: This field is required.", code="missing_field", field=name)
            if not isinstance(data[name], str) or not data[name]:
                raise ApiError(f"{name}: Must be a non-empty string.", code="invalid_field", field=name)
        tenant_id, raw_key = data["tenant_id"], data["api_key"]
        key = find_key(raw_key)
        if key is None or key.tenant.tenant_id != tenant_id:
            raise exceptions.AuthenticationFailed(INVALID)
        key.touch()
        return (None, key)

    def authenticate_header(self, request):
        return 'Body realm="herald", fields="tenant_id api_key"'


class ServerKeyAuthentication(authentication.BaseAuthentication):
    """A server key in ``X-Server-Key`` or ``Authorization: Bearer``."""

    def authenticate(self, request):
        raw_key = request.headers.get("X-Server-Key", "")
        if not raw_key:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                raw_key = value.strip()
        if not raw_key:
            raise exceptions.NotAuthenticated("Send a server key in the X-Server-Key header.")
        key = find_key(raw_key)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid server key.")
        key.touch()
        return (None, key)

    def authenticate_header(self, request):
        return 'Bearer realm="herald"'


class IsServerKey(permissions.BasePermission):
    """App keys ship inside apps, so they may not send pushes or read messages."""

    message = "This endpoint needs a server key; app keys may only record events, opens and tokens."

    def has_permission(self, request, view):
        return request.auth is not None and request.auth.kind == ApiKey.Kind.SERVER


# App endpoints are called from browsers too (web push). Their credentials travel in the
# body, never in cookies, so any origin may call them: CORS with "*" exposes nothing.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Expose-Headers": "Retry-After",
    "Access-Control-Max-Age": "86400",
}


@dataclass(frozen=True, slots=True)
class PlainWork:
    """What the plain path does for an app request whose body is plainly valid, once the rate
    limits allow it. `then` is done in the round trip that counts the limits (queued ingestion
    appends its event to the stream, a refresh reads its tokens' pending markers), and
    answer(result) gives the JSON answer, called with what `then` gave (the entry's id, the
    values read), or None when it was not done because Redis failed or is shunned (the answer
    must then do without it: an event is written directly). answer() may answer None to let
    the DRF view take the request after all (it words the 400, 404 or 409); the request has
    been counted once already and is not counted again."""

    answer: Callable[[Any], dict | None]
    then: throttling.StreamAppend | throttling.HashRead | None = None


class AppEndpoint(APIView):
    """An endpoint apps call with tenant_id + api_key in the body."""

    authentication_classes = [BodyKeyAuthentication]
    # Per tenant and IP (phones share carrier NATs), and per key.
    throttle_classes = [PerTenantIpThrottle, PerKeyThrottle]
    cors_headers = CORS_HEADERS  # answers the rate limiter gives before the view carry them too

    # The plain path's work for a POST whose body is plainly valid (see _with_plain_path):
    # plain_prepare(key=, data=) checks the body once and answers a PlainWork, or None to let
    # the DRF view take the request (it judges the body and words the error).
    plain_prepare: Callable[..., PlainWork | None] | None = None

    @classmethod
    def as_view(cls, **initkwargs):
        view = super().as_view(**initkwargs)
        return view if cls.plain_prepare is None else _with_plain_path(cls, view)

    def initial(self, request, *args, **kwargs):
        # The credentials are in the body, so a wrong method must be refused before they
        # are looked for: a GET deserves 405, not 401; a CORS preflight has no body at all.
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            self.http_method_not_allowed(request)
        if request.method == "OPTIONS":
            return
        super().initial(request, *args, **kwargs)

    @extend_schema(exclude=True)
    def options(self, request, *args, **kwargs):
        return Response(status=204)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for header, value in self.cors_headers.items():
            response[header] = value
        return response


# --- OpenAPI: how the schema describes these schemes --------------------------------


class BodyKeyScheme(OpenApiAuthenticationExtension):
    target_class = BodyKeyAuthentication
    name = "bodyKey"

    def get_security_definition(self, auto_schema):
        # OpenAPI has no scheme for credentials inside the body; describe it honestly.
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Unused-Body-Credentials",
            "description": "Send `tenant_id` and `api_key` in the JSON body (no header).",
        }


class ServerKeyScheme(OpenApiAuthenticationExtension):
    target_class = ServerKeyAuthentication
    match_subclasses = True
    name = "serverKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Server-Key",
            "description": "A server key; `Authorization: Bearer <key>` works too.",
        }


# --- The plain path: a valid app request answered without DRF -----------------------------

# Bodies and Accept headers for which DRF would parse and render exactly as the plain path
# does; with any other, DRF takes the request and decides (415, 406, an indented answer, …).
PLAIN_CONTENT_TYPES = frozenset(
    {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
)
_JSON_ACCEPTS = frozenset({"*/*", "application/*", "application/json"})
_renderer = JSONRenderer()
# What _renderer.render(answer, "application/json", {}) calls json.dumps with (no indent: the
# plain path takes no Accept with parameters), as one encoder built once: json.dumps builds an
# encoder per call when given options, and render() parses the media type for an indent first.
_encoder = _renderer.encoder_class(
    ensure_ascii=_renderer.ensure_ascii,
    allow_nan=not _renderer.strict,
    separators=SHORT_SEPARATORS if _renderer.compact else LONG_SEPARATORS,
)


def _render(answer: dict) -> bytes:
    """The bytes DRF's JSONRenderer renders `answer` to for `Accept: application/json`."""
    return _encoder.encode(answer).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _accepts_plain_json(accept: str | None) -> bool:
    """Whether DRF's content negotiation would pick its JSON renderer with no parameters."""
    if accept is None:
        return True
    if ";" in accept or len(accept) > 1000:
        return False
    tokens = [token for token in (token.strip() for token in accept.split(",")) if token][:64]
    return any(token in _JSON_ACCEPTS for token in tokens)


def _with_plain_path(endpoint: type[AppEndpoint], drf_view):
    """The endpoint's view: the plain path first, the DRF view for anything it does not take.

    Nearly every app request is a valid POST from a key this process remembers, and on
    /events DRF's request and response handling, the throttles' separate round trips to
    Redis and the middleware's own one cost more than the work itself. The plain path reads
    the body with the same parser, takes the key only from the key cache, checks the
    failed-authentication budget and counts both rate limits in one Redis call (with the
    work's own Redis step, if any), and asks the endpoint's `plain_prepare` for the work and
    its answer, which it renders as DRF would. Whatever it does not take (a
    key not remembered, a limit reached, an invalid body, an OPTIONS) goes to the DRF view,
    which answers exactly as it always has, without counting the request twice. The DRF
    view stays what the URL names, so the OpenAPI schema is the same.
    """
    allow = ", ".join(endpoint().allowed_methods)

    def plain_response(request) -> HttpResponse | None:
        """The plain path's answer to the request, or None: then the DRF view is to answer.
        Tried once per request (PlainPathMiddleware may have tried it already)."""
        if getattr(request, "_herald_plain_tried", False):
            return None
        request._herald_plain_tried = True
        answer = _plain_answer(endpoint, request)
        if answer is None or isinstance(answer, HttpResponse):
            return answer
        response = HttpResponse(_render(answer), content_type="application/json")
        response["Allow"] = allow
        for header, value in endpoint.cors_headers.items():
            response[header] = value
        return response

    @functools.wraps(drf_view)
    def view(request, *args, **kwargs):
        response = plain_response(request)
        if response is not None:
            return response
        if not getattr(request, "_herald_auth_failures_checked", False):
            refusal = throttling.refuse_after_auth_failures(request, cors_headers=endpoint.cors_headers)
            if refusal is not None:
                return refusal
        return drf_view(request, *args, **kwargs)

    # AuthFailureLimitMiddleware leaves the budget to this view (one round trip with the limits).
    view.limits_auth_failures = True
    view.plain_response = plain_response
    return view


class PlainPathMiddleware:
    """Answers a plainly valid app request (see _with_plain_path) before the middleware that
    only the admin's pages and the DRF views need.

    It sits after the middleware that shape every answer (security headers, CSP, metrics,
    Content-Length, X-Frame-Options), which so treat its answers as they treat any view's,
    and before sessions, CSRF, authentication, messages and the sign-in lockout, which do
    nothing to such a request or its JSON answer but cost a quarter of /events' Python time
    when run. A request the plain path does not take goes on down the chain unchanged, to
    the DRF view (which does not try the plain path a second time).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._by_path: dict[str, tuple | None] = {}

    def __call__(self, request):
        if request.method == "POST":
            found = self._plain_view(request.path_info)
            if found is not None:
                plain_response, match = found
                response = plain_response(request)
                if response is not None:
                    request.resolver_match = match  # for the metrics, as the handler would set it
                    return response
        return self.get_response(request)

    def _plain_view(self, path: str) -> tuple | None:
        """(the view's plain_response, its ResolverMatch) for a path served by an endpoint with
        a plain path, else None; remembered per path."""
        try:
            return self._by_path[path]
        except KeyError:
            pass
        try:
            match = resolve(path)
        except Resolver404:
            match = None
        plain_response = getattr(match.func, "plain_response", None) if match is not None else None
        found = (plain_response, match) if plain_response is not None else None
        if len(self._by_path) >= 1000:  # paths with ids in them: start over rather than grow
            self._by_path.clear()
        self._by_path[path] = found
        return found


def _plain_answer(endpoint: type[AppEndpoint], request) -> dict | HttpResponse | None:
    """What the plain path answers: a dict for the work's answer, a 429 when the client's
    failed-authentication budget is spent, or None when the DRF view is to take the request."""
    meta = request.META
    length = meta.get("CONTENT_LENGTH", "")
    # Within both limits, request.body reads the very bytes DRF's parser would.
    most = min(
        settings.API_MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or settings.API_MAX_BODY_BYTES
    )
    if (
        request.method != "POST"
        or meta.get("QUERY_STRING")
        or meta.get("CONTENT_TYPE") not in PLAIN_CONTENT_TYPES
        or not _accepts_plain_json(meta.get("HTTP_ACCEPT"))
        or not (length.isascii() and length.isdigit() and 0 < int(length) <= most)
    ):
        return None
    try:
        data = parse_json(request.body)
    except ApiError:
        return None
    if not isinstance(data, dict):
        return None
    tenant_id, raw_key = data.get("tenant_id"), data.get("api_key")
    if not isinstance(tenant_id, str) or not isinstance(raw_key, str):
        return None
    key = remembered_key(raw_key)
    if key is None or key.tenant.tenant_id != tenant_id:
        return None

    work = endpoint.plain_prepare(key=key, data=data)
    if work is None:
        return None

    # The failed-authentication budget, the rate limits and the work's `then`, in one round trip.
    guard = throttling.auth_failure_counter(request)
    request._herald_auth_failures_checked = True
    counters = [c for c in (throttle().counter(request, key) for throttle in endpoint.throttle_classes) if c]
    counted = throttling.hit_unless(
        [(name, period, limit) for name, period, limit, _ in counters],
        guard=(guard[0], guard[2]) if guard is not None else None,
        then=work.then,
    )
    if counted.counts is None:
        return throttling.auth_failures_refusal(guard[3], cors_headers=endpoint.cors_headers)
    setattr(request, throttling.COUNTED, {c[0]: n for c, n in zip(counters, counted.counts, strict=True)})
    if any(n > limit for (_, _, limit, _), n in zip(counters, counted.counts, strict=True)):
        return None  # the DRF view's throttles read these counts and answer the 429; nothing queued
    key.touch()
    return work.answer(counted.then)
