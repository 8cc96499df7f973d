"""Rate limits per API key and per client IP, shared by every process through the cache.

A fixed-window counter: one atomic INCR per request and window (Redis when REDIS_URL is
set, so every web process counts together; process-local memory otherwise). DRF's own
throttles keep a list of timestamps per client and read-modify-write it, which is
neither cheap at thousands of requests per minute nor atomic across processes.
"""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
           "d": 86400, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int] | None:
    """'600/min' → (600, 60). None or '' means no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


class FixedWindowThrottle(BaseThrottle):
    setting = ""  # the name of the setting holding the rate, e.g. "RATE_LIMIT_PER_IP"
    scope = ""

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        rate = parse_rate(getattr(settings, self.setting, ""))
        ident = self.ident(request)
        if rate is None or ident is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        key = f"rl:{self.scope}:{ident}:{period}:{window}"
        cache.add(key, 0, timeout=period + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=period + 1)
            count = 1
        self._wait = (window + 1) * period - now
        return count <= limit

    def wait(self) -> float:
        return max(self._wait, 1.0)


class PerIpThrottle(FixedWindowThrottle):
    """Requests per client IP (REMOTE_ADDR, or X-Forwarded-For behind NUM_PROXIES proxies)."""

    setting, scope = "RATE_LIMIT_PER_IP", "ip"

    def ident(self, request):
        return self.get_ident(request)


class PerKeyThrottle(FixedWindowThrottle):
    """Requests per API key (an app key is shared by every install of the app)."""

    setting, scope = "RATE_LIMIT_PER_KEY", "key"

    def ident(self, request):
        key = getattr(request, "auth", None)
        return str(key.pk) if key is not None else None


class DeveloperPushThrottle(PerIpThrottle):
    """SmartAppPush's own limit on /developer/push: 100 requests/s per IP."""

    setting, scope = "DEVELOPER_PUSH_RATE", "devpush"
