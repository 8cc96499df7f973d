"""Turning a request into a tenant.

App endpoints carry ``tenant_id`` and ``api_key`` in the JSON body, as SmartAppPush's
do; server endpoints carry a server key in ``X-Server-Key`` or
``Authorization: Bearer``. Either way the caller gets back the ApiKey (and through it
the Tenant) or a 401 that does not say which half was wrong.

Body-key endpoints (`AppEndpoint`) answer CORS: browsers call them, and because the key is
in the body, never in a cookie, any origin may.
"""

import time
from collections.abc import Callable

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError, body_object
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


class AppEndpoint(APIView):
    """An endpoint apps call with tenant_id + api_key in the body."""

    authentication_classes = [BodyKeyAuthentication]
    # Per tenant and IP (phones share carrier NATs), and per key.
    throttle_classes = [PerTenantIpThrottle, PerKeyThrottle]
    cors_headers = CORS_HEADERS  # answers the rate limiter gives before the view carry them too

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
