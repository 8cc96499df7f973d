"""Rate limits per API key and per client IP, shared by every process through Redis.

A fixed-window counter: one atomic INCR per request and window. With REDIS_URL the
counters live in Redis, so every web process counts together, and each check is one
round trip (a script doing INCR, and EXPIRE on the window's first hit); without it, in
process memory. DRF's own throttles keep a list of timestamps per client and
read-modify-write it, which is neither cheap at thousands of requests per minute nor
atomic across processes.

A rate limiter must not take the API down with it. Redis gets REDIS_SOCKET_TIMEOUT
(0.25 s) to answer, with no retries; after a failure a circuit breaker skips it for
REDIS_BREAKER_SECONDS (5 s), and meanwhile each process counts in its own memory. A Redis
that accepts connections but never answers so costs one short timeout per process every
few seconds, not seconds per request. /healthz reports Redis as degraded.

Failed authentications are limited before authentication (`AuthFailureLimitMiddleware`):
DRF's throttles run after it, so a stream of bad keys would otherwise never be counted.
"""

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import redis
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.http import JsonResponse
from redis.backoff import NoBackoff
from redis.retry import Retry
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

log = logging.getLogger("herald.api")
KEY_PREFIX = "herald:rl:"
# The clock every window is measured by; tests replace it.
clock = time.time
_client: redis.Redis | None = None
_client_lock = threading.Lock()
# Counters of this process alone: without Redis, and while the breaker keeps Redis out.
_local = LocMemCache("herald-rate-limits", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


def _redis() -> redis.Redis | None:
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        with _client_lock:
            if _client is None:
                timeout = settings.REDIS_SOCKET_TIMEOUT
                _client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),  # redis-py retries 3 times by default
                )
    return _client


def _forget_client(*, setting, **kwargs):
    global _client
    if setting in ("REDIS_URL", "REDIS_SOCKET_TIMEOUT"):
        _client = None
        breaker.close()


setting_changed.connect(_forget_client)

_scripts: dict[str, object] = {}


def _registered(client: redis.Redis, source: str):
    """The redis-py Script of `source` for this client, registered once per client (a client is
    made again when REDIS_URL changes: see _forget_client)."""
    script = _scripts.get(source)
    if script is None or script.registered_client is not client:
        script = _scripts[source] = client.register_script(source)
    return script


# INCR, and EXPIRE on the window's first hit, atomically: one command and one reply, where a
# MULTI of INCR and EXPIRE is four of each (a third less client CPU per check, measured).
HIT_SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
)


def _hit_script(client: redis.Redis):
    return _registered(client, HIT_SCRIPT)


class CircuitBreaker:
    """After a failure, keep away from Redis for REDIS_BREAKER_SECONDS (per process)."""

    def __init__(self):
        self._open_until = 0.0
        self.failures = 0  # calls that found Redis failing, since the process started

    def is_open(self) -> bool:
        return clock() < self._open_until

    def trip(self) -> None:
        self.failures += 1
        self._open_until = clock() + settings.REDIS_BREAKER_SECONDS

    def close(self) -> None:
        self._open_until = 0.0


breaker = CircuitBreaker()


def _call_redis(operation):
    """Run operation(client) against Redis; None without Redis, when it fails, or while it is shunned."""
    client = _redis()
    if client is None or breaker.is_open():
        return None
    try:
        return operation(client)
    except redis.RedisError as exc:
        breaker.trip()
        log.warning(
            "rate limits counted in process memory for %ss: Redis failed (%s)",
            settings.REDIS_BREAKER_SECONDS,
            type(exc).__name__,
            extra={"error": type(exc).__name__},
        )
        return None


def _incr(client: redis.Redis, key: str, period: int) -> int:
    # One command: INCR, and EXPIRE on the window's first hit (a MULTI was four).
    return _hit_script(client)(keys=[KEY_PREFIX + key], args=[period + 1])


def hit(key: str, period: int) -> int:
    """Count one request against `key` for a window of `period` seconds; the count so far."""
    count = _call_redis(lambda client: _incr(client, key, period))
    if count is not None:
        return count
    return _hit_local(key, period)


def _hit_local(key: str, period: int) -> int:
    _local.add(key, 0, timeout=period + 1)
    try:
        return _local.incr(key)
    except ValueError:  # expired between add and incr
        _local.add(key, 1, timeout=period + 1)
        return 1


# Every app request's limits in one round trip, and what the request does in Redis once they
# allow it. KEYS[1] is the failed-authentication guard: if its count has reached its limit
# (ARGV[1]; '' for no guard), nothing is counted and the answer is {guard}. Otherwise each of the
# n (ARGV[2]) counters KEYS[2..n+1] counts one request as HIT_SCRIPT does (ARGV[3..n+2]: the
# periods + 1), and only if no count is over its limit (ARGV[n+3..2n+2]) the tail ARGV[2n+3] runs:
#   ''        nothing;
#   'append'  unless the stream KEYS[n+2] holds ARGV[2n+4] entries already ('' for no bound),
#             XADD of the fields ARGV[2n+6..] to it, and, unless the field ARGV[2n+5] is '',
#             HSET of that field of the hash KEYS[n+3] to the new entry's id (or '' when full);
#   'read'    HGET of the fields ARGV[2n+4..] of the hash KEYS[n+2] ('' for a missing one).
# Answers {guard count, counts...}, followed by the tail's results when it ran: the entry's id,
# or the values read.
HIT_UNLESS_SCRIPT = """
local guard = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= '' and guard >= tonumber(ARGV[1]) then return {guard} end
local n = tonumber(ARGV[2])
local answer = {guard}
local within = true
for i = 1, n do
    local c = redis.call('INCR', KEYS[i + 1])
    if c == 1 then redis.call('EXPIRE', KEYS[i + 1], ARGV[2 + i]) end
    answer[i + 1] = c
    if c > tonumber(ARGV[2 + n + i]) then within = false end
end
local tail = ARGV[2 * n + 3]
if not within or tail == '' then return answer end
if tail == 'append' then
    if ARGV[2 * n + 4] ~= '' and redis.call('XLEN', KEYS[n + 2]) >= tonumber(ARGV[2 * n + 4]) then
        answer[n + 2] = ''
        return answer
    end
    local fields = {}
    for i = 2 * n + 6, #ARGV do fields[#fields + 1] = ARGV[i] end
    local id = redis.call('XADD', KEYS[n + 2], '*', unpack(fields))
    if ARGV[2 * n + 5] ~= '' then redis.call('HSET', KEYS[n + 3], ARGV[2 * n + 5], id) end
    answer[n + 2] = id
else
    for i = 2 * n + 4, #ARGV do answer[#answer + 1] = redis.call('HGET', KEYS[n + 2], ARGV[i]) or '' end
end
return answer
"""


def _hit_unless_script(client: redis.Redis):
    return _registered(client, HIT_UNLESS_SCRIPT)


def _evalsha(client: redis.Redis, script, keys: list, args: list):
    """The script's answer, as script(keys=keys, args=args) gives it, through a pooled
    connection directly: redis-py's command layers (retries, which are off, observability
    hooks, option filtering) cost a third of the call's client CPU, the socket the rest.
    A server that has lost the script (a restart, SCRIPT FLUSH) gets it from redis-py's
    own call, which loads it."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        answer = connection.read_response()
    except redis.exceptions.NoScriptError:
        answer = None
    except BaseException:
        connection.disconnect()  # a reply may still be on its way: never reuse the socket
        raise
    finally:
        pool.release(connection)
    if answer is None:
        return script(keys=keys, args=args)
    return answer


@dataclass(frozen=True, kw_only=True)
class StreamAppend:
    """An entry to append to a Redis stream once the limits allow (see hit_unless): its fields,
    and a marker (hash key, field) set to the entry's id; nothing is appended when the stream
    holds max_length entries already."""

    stream: str
    fields: tuple[str, ...]  # field, value, field, value, ...
    marker_hash: str = ""
    marker_field: str = ""
    max_length: int | None = None


@dataclass(frozen=True)
class HashRead:
    """Fields of a Redis hash to read once the limits allow (see hit_unless)."""

    hash_key: str
    fields: tuple[str, ...]


class Counted(NamedTuple):
    """What hit_unless did. counts: the counts so far, in the counters' order, or None when the
    guard refused (nothing counted, nothing done). then: the result of `then` (the appended
    entry's id, '' when the stream was full, or the values read, None for a missing field), or
    None when it was not done: a count is over its limit, or Redis failed or is shunned (then
    the counts are this process's own and the caller must do without Redis)."""

    counts: list[int] | None
    then: str | list[str | None] | None = None


def hit_unless(
    counters: list[tuple[str, int, int]],
    *,
    guard: tuple[str, int] | None,
    then: StreamAppend | HashRead | None = None,
) -> Counted:
    """Count one request against each (key, period, limit) of `counters`, unless the count under
    the guard's key has reached its limit (guard: (key, limit)); and, only when the guard allowed
    and no count went over its limit, do `then`: append an entry to a stream, or read fields of
    a hash.

    One round trip to Redis (HIT_UNLESS_SCRIPT) where count() and a hit() per counter take one
    each: an app request checks its client's failed-authentication budget and two rate limits,
    and in queued ingestion appends its event or reads its tokens' pending markers."""
    guard_key, limit = guard or ("", None)
    if not counters and guard is None and then is None:
        return Counted([])

    def run(client):
        keys = [KEY_PREFIX + guard_key, *(KEY_PREFIX + key for key, _, _ in counters)]
        args = [
            "" if limit is None else limit,
            len(counters),
            *(period + 1 for _, period, _ in counters),
            *(most for _, _, most in counters),
        ]
        if isinstance(then, StreamAppend):
            keys += [then.stream, then.marker_hash or then.stream]
            args += [
                "append",
                "" if then.max_length is None else then.max_length,
                then.marker_field if then.marker_hash else "",
                *then.fields,
            ]
        elif isinstance(then, HashRead):
            keys.append(then.hash_key)
            args += ["read", *then.fields]
        else:
            args.append("")
        return _evalsha(client, _hit_unless_script(client), keys, args)

    answer = _call_redis(run)
    if answer is None:  # without Redis: this process's own counters, as count() and hit() keep
        if limit is not None and _local.get(guard_key, 0) >= limit:
            return Counted(None)
        return Counted([_hit_local(key, period) for key, period, _ in counters])
    if limit is not None and answer[0] >= limit:
        return Counted(None)
    n = len(counters)
    counts, tail = answer[1 : n + 1], answer[n + 1 :]
    if then is None or any(count > most for count, (_, _, most) in zip(counts, counters, strict=True)):
        return Counted(counts)
    if isinstance(then, StreamAppend):  # '' when the stream was full
        return Counted(counts, tail[0].decode())
    return Counted(counts, [value.decode() if value else None for value in tail])


def append_to_stream(append: StreamAppend) -> str | None:
    """Append the entry (and set its marker) in one round trip: the new entry's id, '' when the
    stream was full, or None when Redis failed or is shunned."""
    return hit_unless([], guard=None, then=append).then


def redis_client() -> redis.Redis | None:
    """The client the rate limits use (short timeouts, no retries), or None without REDIS_URL.
    The circuit breaker is the caller's to heed (see _call_redis)."""
    return _redis()


def count(key: str) -> int:
    """The count so far under `key`, without adding to it."""
    value = _call_redis(lambda client: client.get(KEY_PREFIX + key))
    if value is not None:
        return int(value)
    return _local.get(key, 0)


def reset_local_counters() -> None:
    """Forget this process's own counters (tests)."""
    _local.clear()


def redis_health() -> dict:
    """Ping Redis once with the rate limiter's short timeout. Raises when it does not answer."""
    _redis().ping()
    return {"breaker_open": breaker.is_open()}


PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


@functools.lru_cache(maxsize=64)  # a handful of settings' values, read on every request
def parse_rate(rate: str) -> tuple[int, int] | None:
    """'600/min' → (600, 60). None or '' means no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


def client_ip(request) -> str:
    """The client's address, exactly as DRF's BaseThrottle.get_ident gives it (REMOTE_ADDR, or
    X-Forwarded-For behind NUM_PROXIES proxies), read from request.META: get_ident reads the
    header through request.headers, which builds a dict of every header of the request to
    read one of them (on /events, more than the rest of a counter's name)."""
    xff = request.META.get("HTTP_X_FORWARDED_FOR")
    remote_addr = request.META.get("REMOTE_ADDR")
    num_proxies = api_settings.NUM_PROXIES
    if num_proxies is not None:
        if num_proxies == 0 or xff is None:
            return remote_addr
        addrs = xff.split(",")
        return addrs[-min(num_proxies, len(addrs))].strip()
    return "".join(xff.split()) if xff else remote_addr


class FixedWindowThrottle(BaseThrottle):
    setting = ""  # the name of the setting holding the rate, e.g. "RATE_LIMIT_PER_IP"
    scope = ""

    def get_ident(self, request) -> str:
        return client_ip(request)

    def ident(self, request, key) -> str | None:
        """Who is counted; `key` is the request's ApiKey (None before or without authentication)."""
        raise NotImplementedError

    def counter(self, request, key) -> tuple[str, int, int, float] | None:
        """The counter this request counts against: (name, period, limit, seconds left in the
        window), or None when the limit is off or does not apply to the request."""
        rate = parse_rate(getattr(settings, self.setting, ""))
        ident = self.ident(request, key)
        if rate is None or ident is None:
            return None
        limit, period = rate
        now = clock()
        window = int(now // period)
        return f"{self.scope}:{ident}:{period}:{window}", period, limit, (window + 1) * period - now

    def allow_request(self, request, view) -> bool:
        counter = self.counter(request, getattr(request, "auth", None))
        if counter is None:
            return True
        name, period, limit, self._wait = counter
        # Counted already when a view counted every limit in one round trip (tenants.auth).
        counted = getattr(request, COUNTED, None) or {}
        count = counted.pop(name) if name in counted else hit(name, period)
        return count <= limit

    def wait(self) -> float:
        return max(self._wait, 1.0)


# The request attribute that holds {counter name: count} for counters already counted.
COUNTED = "_herald_rate_limit_counts"


class PerIpThrottle(FixedWindowThrottle):
    """Requests per client IP (REMOTE_ADDR, or X-Forwarded-For behind NUM_PROXIES proxies).

    On the server endpoints (/api/v1/): a back end calls from few addresses.
    """

    setting, scope = "RATE_LIMIT_PER_IP", "ip"

    def ident(self, request, key):
        return self.get_ident(request)


class PerKeyThrottle(FixedWindowThrottle):
    """Requests per API key (an app key is shared by every install of the app)."""

    setting, scope = "RATE_LIMIT_PER_KEY", "key"

    def ident(self, request, key):
        return str(key.pk) if key is not None else None


class PerTenantIpThrottle(FixedWindowThrottle):
    """Requests per tenant and client IP, on the app endpoints.

    Phones behind one carrier NAT share an address, so the budget (RATE_LIMIT_APP_PER_IP)
    is sized for thousands of them, and one tenant's apps do not spend another's.
    """

    setting, scope = "RATE_LIMIT_APP_PER_IP", "appip"

    def ident(self, request, key):
        return f"{key.tenant_id}:{self.get_ident(request)}" if key is not None else None


class DeveloperPushThrottle(PerIpThrottle):
    """SmartAppPush's own limit on /developer/push, its only one: 100 requests/s per IP."""

    setting, scope = "DEVELOPER_PUSH_RATE", "devpush"


# --- Failed authentication, limited before authentication -----------------------------


class AuthFailureLimitMiddleware:
    """After RATE_LIMIT_AUTH_FAILURES_PER_IP failed authentications (401s) from one client IP,
    every API request from it answers 429 until the window passes.

    Runs before the view, so before authentication: a wrong key costs one counter read,
    never a key lookup, once the budget is spent. Only DRF views that authenticate count.
    A view marked ``limits_auth_failures`` checks the budget itself (tenants.auth's app
    endpoints, in the round trip that counts their rate limits); a 401 counts all the same.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        counted = getattr(request, "_herald_auth_failure_key", None)
        if counted is not None and response.status_code == 401:
            hit(*counted)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Imported here: rest_framework.views imports this module (DEFAULT_THROTTLE_CLASSES).
        from rest_framework.views import APIView

        view_class = getattr(view_func, "cls", None)
        if getattr(view_func, "limits_auth_failures", False) or not (
            isinstance(view_class, type)
            and issubclass(view_class, APIView)
            and view_class.authentication_classes
        ):
            return None
        return refuse_after_auth_failures(request, cors_headers=getattr(view_class, "cors_headers", {}))


def auth_failure_counter(request) -> tuple[str, int, int, float] | None:
    """The failed-authentication counter of the request's client IP: (name, period, limit,
    seconds left in the window), or None when the limit is off. From here on, a 401 answer
    to the request counts against it (AuthFailureLimitMiddleware)."""
    rate = parse_rate(settings.RATE_LIMIT_AUTH_FAILURES_PER_IP)
    if rate is None:
        return None
    limit, period = rate
    now = clock()
    window = int(now // period)
    name = f"authfail:{client_ip(request)}:{period}:{window}"
    request._herald_auth_failure_key = (name, period)
    return name, period, limit, (window + 1) * period - now


def refuse_after_auth_failures(request, *, cors_headers: dict) -> JsonResponse | None:
    """The 429 for a client IP whose failed-authentication budget is spent, or None."""
    counter = auth_failure_counter(request)
    if counter is None or count(counter[0]) < counter[2]:
        return None
    return auth_failures_refusal(counter[3], cors_headers=cors_headers)


def auth_failures_refusal(seconds_left: float, *, cors_headers: dict) -> JsonResponse:
    wait = max(1, int(seconds_left + 0.999))
    response = JsonResponse(
        {
            "error": "rate_limited",
            "detail": f"Too many failed authentications from this address; try again in {wait} s.",
        },
        status=429,
        headers={"Retry-After": str(wait)},
    )
    for header, value in cors_headers.items():
        response[header] = value
    return response
