"""FCM HTTP v1: the only module in Herald that talks to Google.

It builds google-auth credentials from a service account it is handed, keeps one access
token per credential (shared by every thread, refreshed when google-auth considers
it stale, i.e. 3m45s before it expires), sends one message per request over a pool
of keep-alive connections, and turns every outcome into a message name or an
``FcmError`` that says what happened and whether trying again can help. Which
credential a tenant sends with, and recording what a check found, is
``messaging.services``' business: this module reads no table.

    client = services.client_for_tenant(tenant)  # an FcmClient, shared per credential
    message = build_message(target=FcmTarget(token=device.token), title="Hi", body="…", data={})
    try:
        name = client.send(message)
    except FcmError as error:
        if error.unregistered: device.deactivate(reason=error.code)
        elif not error.permanent: retry later, no sooner than error.retry_after

URLs: the token endpoint is the service account's ``token_uri``, which must be one of
``FCM_ALLOWED_TOKEN_URIS`` (Google's two, unless the operator adds more; the service
account is an upload, and its URL must not aim Herald at internal services), or
``FCM_TOKEN_URL`` when the operator sets it; the API base is ``FCM_API_URL``. The demo
points both at the sandbox. Token requests follow no redirects, give up after
``FCM_TOKEN_TIMEOUT`` seconds, and a refusal is reported by status and OAuth error code,
never by the remote body.
"""

import base64
import email.utils
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import google.auth.exceptions
import google.auth.transport.requests
import requests
import urllib3
from django.conf import settings
from google.oauth2 import service_account

from api import metrics
from tenants.credentials import token_uri_allowed, token_uri_refusal

logger = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/firebase.messaging",)
MAX_TTL_SECONDS = 28 * 24 * 3600  # FCM keeps a message at most 4 weeks
# Priority at or above this is urgent: Android HIGH, APNs 10, Web Push "high".
HIGH_PRIORITY_FROM = 7
# The topic a credential check addresses; validate_only means nobody receives it.
CHECK_TOPIC = "herald-credential-check"


# --- Errors ------------------------------------------------------------------------

# The error codes Herald knows, named here and nowhere else. FCM's own errorCodes:
UNREGISTERED = "UNREGISTERED"
SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
THIRD_PARTY_AUTH_ERROR = "THIRD_PARTY_AUTH_ERROR"
UNSPECIFIED_ERROR = "UNSPECIFIED_ERROR"
# The API's statuses, when FCM names no errorCode:
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
NOT_FOUND = "NOT_FOUND"
# Herald's own: the request never got an answer, or could not be made.
TIMEOUT = "TIMEOUT"
CONNECTION_ERROR = "CONNECTION_ERROR"
CONFIGURATION = "CONFIGURATION"
# Herald's own, for deliveries that never reached FCM.
CANCELLED = "CANCELLED"  # the message was cancelled before the delivery's turn
DEVICE_GONE = "DEVICE_GONE"  # the device was deleted before its turn

# Worth trying again later (with backoff, honouring retry_after). Everything else is
# permanent: the same request would fail the same way.
RETRYABLE_CODES = frozenset({QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, TIMEOUT, CONNECTION_ERROR})
# The device's token is dead for this tenant: stop targeting it.
UNREGISTERED_CODES = frozenset({UNREGISTERED, SENDER_ID_MISMATCH})

# When FCM's body names no errorCode (proxies, auth failures, wrong project), the
# HTTP status decides. A bare 404 is NOT_FOUND, never UNREGISTERED: a wrong project
# or URL must not look like every device being gone.
_CODE_FOR_STATUS = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    429: QUOTA_EXCEEDED,
    500: INTERNAL,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}


class FcmError(Exception):
    """A send (or token fetch) that did not produce a message.

    ``code`` is FCM's errorCode (UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT,
    QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, THIRD_PARTY_AUTH_ERROR), else the API's
    status (UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND), else a local one: TIMEOUT,
    CONNECTION_ERROR, CONFIGURATION.
    """

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        status: int | None = None,
        permanent: bool | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.status = status
        self.permanent = _is_permanent(code, status) if permanent is None else permanent
        self.retry_after = retry_after

    @property
    def unregistered(self) -> bool:
        """The device must be deactivated: its token is gone or belongs to another project."""
        return self.code in UNREGISTERED_CODES

    def __reduce__(self):  # task backends pickle exceptions; keep every field
        return (
            _rebuild_error,
            (self.code, self.detail, self.status, self.permanent, self.retry_after),
        )

    def __repr__(self) -> str:
        return (
            f"FcmError(code={self.code!r}, status={self.status!r}, permanent={self.permanent!r}, "
            f"retry_after={self.retry_after!r}, detail={self.detail!r})"
        )


def _rebuild_error(code, detail, status, permanent, retry_after) -> FcmError:
    return FcmError(code, detail, status=status, permanent=permanent, retry_after=retry_after)


def _is_permanent(code: str, status: int | None) -> bool:
    if code in RETRYABLE_CODES:
        return False
    if code == UNSPECIFIED_ERROR:  # FCM knows nothing more; trust the status
        return status is not None and status < 500 and status != 429
    return True


def error_from_response(response: urllib3.BaseHTTPResponse) -> FcmError:
    """Turn a non-200 answer from FCM into an FcmError, reading errorCode from details."""
    status = response.status
    code = message = None
    api_status = None
    try:
        error = json.loads(response.data).get("error")
    except (ValueError, AttributeError, TypeError):
        error = None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        api_status = error.get("status") if isinstance(error.get("status"), str) else None
        for detail in error.get("details") or ():
            if (
                isinstance(detail, dict)
                and str(detail.get("@type", "")).endswith("google.firebase.fcm.v1.FcmError")
                and isinstance(detail.get("errorCode"), str)
            ):
                code = detail["errorCode"]
                break
    if code is None:
        code = _CODE_FOR_STATUS.get(status) or api_status
    if code is None:
        code = INTERNAL if status >= 500 else f"HTTP_{status}"
    detail = message or f"HTTP {status} {response.reason or ''}".strip()
    return FcmError(
        code,
        detail[:1000],
        status=status,
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- Messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class FcmTarget:
    """Where a message goes: exactly one of a registration token, an FID, a topic, a condition."""

    token: str | None = None
    fid: str | None = None
    topic: str | None = None
    condition: str | None = None

    def __post_init__(self):
        given = [name for name in ("token", "fid", "topic", "condition") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"An FcmTarget names exactly one of token, fid, topic or condition, not {len(given)}."
            )

    def as_fields(self) -> dict[str, str]:
        """The target as Message fields, e.g. {"token": "…"}."""
        if self.token:
            return {"token": self.token}
        if self.fid:
            return {"fid": self.fid}
        if self.topic:
            # FCM wants the bare name; "/topics/news" is the legacy spelling.
            return {"topic": self.topic.removeprefix("/topics/")}
        return {"condition": self.condition}


def build_message(
    *,
    target: FcmTarget | None,
    title: str,
    body: str,
    data: dict[str, str],
    image: str = "",
    click_link: str = "",
    priority: int = 5,
    ttl_seconds: int | None = None,
    collapse_key: str = "",
    data_only: bool = True,
    android_channel: str = "",
    sound: str = "",
    badge: int | None = None,
    analytics_label: str = "",
) -> dict:
    """The FCM v1 Message (the value of "message") for one of Herald's pushes.

    Without a target, the message for many targets: add each one's ``as_fields()``.

    Data-only (the default, what SmartAppPush apps expect): title, body, image,
    click_link, channel_id, sound and badge travel as strings in ``data`` beside the
    caller's keys, and the app draws the notification. With ``data_only=False`` FCM
    draws it from a ``notification`` block and the platform options.

    Priority 1–10: 7 and above is urgent (Android HIGH, APNs 10, Web Push Urgency
    high); below is NORMAL / 5 / normal. A data-only push reaches iOS as a background
    push, which Apple requires to carry apns-priority 5 whatever the priority.

    TTL becomes android.ttl ("3600s"), apns-expiration (a UNIX time) and the Web Push
    TTL header. ``click_link`` goes to data["click_link"] and, when it is HTTPS (FCM
    accepts nothing else there), to webpush.fcm_options.link.
    """
    if not 1 <= priority <= 10:
        raise ValueError(f"priority must be 1–10, not {priority}.")
    if ttl_seconds is not None and not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be 0–{MAX_TTL_SECONDS} (4 weeks), not {ttl_seconds}.")
    bad = [key for key, value in data.items() if not isinstance(key, str) or not isinstance(value, str)]
    if bad:
        raise TypeError(f"FCM data values must be strings; not so for {', '.join(map(str, bad))}.")
    urgent = priority >= HIGH_PRIORITY_FROM

    payload = dict(data)
    if data_only:
        extras = {
            "title": title,
            "body": body,
            "image": image,
            "channel_id": android_channel,
            "sound": sound,
            "badge": "" if badge is None else str(badge),
        }
        payload.update({key: value for key, value in extras.items() if value})
    if click_link:
        payload["click_link"] = click_link

    message: dict = target.as_fields() if target is not None else {}
    if not data_only:
        notification = {"title": title, "body": body, "image": image}
        message["notification"] = {key: value for key, value in notification.items() if value}
    if payload:
        message["data"] = payload

    android: dict = {"priority": "HIGH" if urgent else "NORMAL"}
    if ttl_seconds is not None:
        android["ttl"] = f"{ttl_seconds}s"
    if collapse_key:
        android["collapse_key"] = collapse_key
    if not data_only:
        android_notification = {"channel_id": android_channel, "sound": sound}
        android_notification = {k: v for k, v in android_notification.items() if v}
        if badge is not None:
            android_notification["notification_count"] = badge
        if android_notification:
            android["notification"] = android_notification
    message["android"] = android

    apns_headers: dict[str, str] = {}
    if data_only:
        # A push without an alert is a background push: Apple insists on priority 5.
        apns_headers.update({"apns-push-type": "background", "apns-priority": "5"})
        aps: dict = {"content-available": 1}
    else:
        apns_headers.update({"apns-push-type": "alert", "apns-priority": "10" if urgent else "5"})
        aps = {}
        if sound:
            aps["sound"] = sound
        if badge is not None:
            aps["badge"] = badge
        if image:
            aps["mutable-content"] = 1  # lets a notification service extension attach it
    if ttl_seconds is not None:
        # An absolute UNIX time; 0 means "deliver now or never", as TTL 0 does on FCM.
        apns_headers["apns-expiration"] = (
            "0" if ttl_seconds == 0 else str(int(datetime.now(UTC).timestamp()) + ttl_seconds)
        )
    if collapse_key:
        apns_headers["apns-collapse-id"] = apns_collapse_id(collapse_key)
    apns: dict = {"headers": apns_headers}
    if aps:
        apns["payload"] = {"aps": aps}
    if image and not data_only:
        apns["fcm_options"] = {"image": image}
    message["apns"] = apns

    webpush_headers = {"Urgency": "high" if urgent else "normal"}
    if ttl_seconds is not None:
        webpush_headers["TTL"] = str(ttl_seconds)
    if collapse_key:
        webpush_headers["Topic"] = webpush_topic(collapse_key)
    webpush: dict = {"headers": webpush_headers}
    if click_link.startswith("https://"):
        webpush["fcm_options"] = {"link": click_link}
    message["webpush"] = webpush

    if analytics_label:
        message["fcm_options"] = {"analytics_label": analytics_label}
    return message


# APNs: apns-collapse-id is at most 64 bytes. Web Push (RFC 8030): a Topic is at most 32
# characters of the URL-safe base64 alphabet.
APNS_COLLAPSE_ID_MAX_BYTES = 64
_WEBPUSH_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _digest(key: str) -> str:
    """A stable stand-in for a key that does not fit: 32 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode()[:32]


def apns_collapse_id(key: str) -> str:
    return key if len(key.encode()) <= APNS_COLLAPSE_ID_MAX_BYTES else _digest(key)


def webpush_topic(key: str) -> str:
    return key if _WEBPUSH_TOPIC.match(key) else _digest(key)


def with_collapse_key(message: dict, key: str) -> dict:
    """`message` (a built Message) with `key` as its collapse key on every platform where
    it has none yet: Android ``collapse_key``, APNs ``apns-collapse-id``, Web Push ``Topic``.

    A device that gets two messages with one collapse key shows the last one only, so a
    message sent again (its first answer lost) replaces its first copy. Android keeps at
    most four collapse keys per device while it is offline: older collapsible messages
    may then be dropped, as FCM documents. Returns a new dict; `message` is not changed.
    """
    message = dict(message)
    android = dict(message.get("android") or {})
    android.setdefault("collapse_key", key)
    message["android"] = android
    apns = dict(message.get("apns") or {})
    apns["headers"] = {"apns-collapse-id": apns_collapse_id(key), **(apns.get("headers") or {})}
    message["apns"] = apns
    webpush = dict(message.get("webpush") or {})
    webpush["headers"] = {"Topic": webpush_topic(key), **(webpush.get("headers") or {})}
    message["webpush"] = webpush
    return message


# --- The client ----------------------------------------------------------------------


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport, made safe for a URL that came from an upload.

    A short timeout instead of google-auth's 120 seconds; redirects never followed (a
    token endpoint that redirects is not Google's, and following it would let an upload
    aim Herald at internal services); the status of the last answer kept, so that a
    refusal can be reported by its status rather than by echoing the remote body.
    """

    def __init__(self, session: requests.Session, timeout: float):
        super().__init__(session)
        self._timeout = timeout
        self.last_status: int | None = None

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        kwargs["allow_redirects"] = False
        response = super().__call__(
            url, method=method, body=body, headers=headers, timeout=timeout or self._timeout, **kwargs
        )
        self.last_status = response.status
        return response


# OAuth 2.0's error codes (RFC 6749 5.2): a refusal names one of these, or none.
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
    }
)
# Google's error_description values Herald recognises, with what to say instead. Only
# Herald's own words reach the admin and the logs: never the remote body.
_KNOWN_REFUSALS = (
    (
        "Invalid JWT Signature",
        "Invalid JWT Signature: the key was deleted, disabled or is not this account's",
    ),
    ("account not found", "the service account does not exist"),
    ("short-lived token", "the token's time was refused: is this server's clock right?"),
    ("audience", "the JWT's audience was refused"),
    ("scope", "the scope was refused"),
)


def _refusal_reason(exc: google.auth.exceptions.RefreshError, status: int | None) -> str:
    """A short, known reason for a refused token request: the status and OAuth error code."""
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = data.get("error") if data.get("error") in _OAUTH_ERRORS else None
    description = data.get("error_description")
    known = next(
        (said for words, said in _KNOWN_REFUSALS if isinstance(description, str) and words in description),
        None,
    )
    reason = f"HTTP {status}" if status is not None else "an answer without a token"
    if status is not None and 300 <= status < 400:
        return f"{reason} (a redirect, which Herald does not follow)"
    if error:
        reason += f", {error}"
    if known:
        reason += f": {known}"
    return reason


def _transport_reason(cause: BaseException, timeout: float) -> str:
    """A short, known reason a request got no answer (no hosts, ports or library text)."""
    if isinstance(cause, requests.ConnectTimeout):
        return f"could not connect within {timeout:g}s"
    if isinstance(cause, requests.Timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(cause, requests.exceptions.SSLError):
        return "the TLS handshake failed"
    if isinstance(cause, requests.ConnectionError):
        text = str(cause)
        if "Name or service not known" in text or "NameResolutionError" in text or "nodename" in text:
            return "the host name does not resolve"
        if "refused" in text.lower():
            return "the connection was refused"
        return "the connection failed"
    return "the request failed"


class FcmClient:
    """Sends messages for one service account. Thread-safe; share one per credential.

    ``pool_size`` is the number of keep-alive connections kept to FCM: make it at least
    the number of threads that send at once, or surplus connections are opened and
    thrown away.

    Sends go straight to a urllib3 connection pool (the pool requests itself uses
    underneath). requests' per-call bookkeeping (merging session settings, cookies,
    hooks, redirects) costs about as much CPU again as the HTTP exchange itself, and a
    worker sending to millions of devices pays it on every message. Token fetches, once
    an hour, go through google-auth's requests transport.
    """

    def __init__(
        self,
        *,
        service_account_info: dict,
        api_url: str | None = None,
        pool_size: int = 32,
        timeout: float = 10.0,
    ):
        info = dict(service_account_info)
        if getattr(settings, "FCM_TOKEN_URL", ""):
            info["token_uri"] = settings.FCM_TOKEN_URL  # the operator's choice: trusted
        elif not token_uri_allowed(info.get("token_uri")):
            # Checked at upload too; checked again here because a stored row, an ADC file
            # or a settings change may have let one through.
            raise FcmError(CONFIGURATION, token_uri_refusal(info.get("token_uri")), permanent=True)
        project_id = info.get("project_id")
        if not isinstance(project_id, str) or not project_id:
            raise FcmError(CONFIGURATION, "The service account has no project_id.", permanent=True)
        try:
            self._credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError, TypeError) as exc:
            raise FcmError(
                CONFIGURATION, f"The service account is not usable: {exc}", permanent=True
            ) from None
        self.project_id: str = project_id
        self.client_email: str = info.get("client_email", "")
        self.token_uri: str = info["token_uri"]
        self.api_url: str = (api_url or settings.FCM_API_URL).rstrip("/")
        self.send_url = f"{self.api_url}/v1/projects/{quote(project_id, safe='')}/messages:send"
        self.timeout = timeout
        self.token_fetches = 0
        self._pool_size = pool_size
        self._executor: ThreadPoolExecutor | None = None
        self.token_timeout = min(timeout, settings.FCM_TOKEN_TIMEOUT)
        self._token_request = _TokenRequest(requests.Session(), self.token_timeout)
        self._token_lock = threading.Lock()
        self._open_transport(pool_size)

    def _open_transport(self, pool_size: int) -> None:
        # The environment's proxy and CA bundle, read once as requests would read them.
        proxy = requests.utils.get_environ_proxies(self.send_url)
        proxy_url = proxy.get(self.send_url.split(":", 1)[0]) or proxy.get("all")
        pool_options = {
            "num_pools": 2,
            "maxsize": pool_size,
            "block": False,
            "retries": False,  # retrying is the caller's decision, with backoff
            "timeout": urllib3.Timeout(connect=self.timeout, read=self.timeout),
            "ca_certs": os.environ.get("REQUESTS_CA_BUNDLE") or requests.certs.where(),
        }
        self._http = (
            urllib3.ProxyManager(proxy_url, **pool_options)
            if proxy_url
            else urllib3.PoolManager(**pool_options)
        )
        # Every send goes to the same host: keep its pool at hand rather than looking it
        # up per send. Through a plain-HTTP proxy the request line needs the whole URL.
        self._pool = self._http.connection_from_url(self.send_url)
        self._target = (
            self.send_url
            if proxy_url and self.send_url.startswith("http:")
            else urllib3.util.parse_url(self.send_url).request_uri
        )

    def __repr__(self) -> str:
        return f"<FcmClient {self.project_id} as {self.client_email}>"

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._http.clear()
        self._token_request.session.close()

    # Tokens ----------------------------------------------------------------------

    def access_token(self, *, fresh: bool = False) -> str:
        """The current access token, fetched only when google-auth says it is stale.

        ``fresh=True`` fetches a new one regardless (credential checks use it).
        """
        with self._token_lock:
            if fresh or not self._credentials.valid:
                self._fetch_token()
            return self._credentials.token

    def _replace_rejected_token(self, rejected: str) -> str:
        with self._token_lock:
            # Another thread may have replaced it already; one fetch serves them all.
            if self._credentials.token == rejected:
                self._fetch_token()
            return self._credentials.token

    @metrics.counted_token_fetch
    def _fetch_token(self) -> None:
        self.token_fetches += 1
        self._token_request.last_status = None
        try:
            # refresh(), not before_request(): the latter also starts google-auth's
            # regional-access-boundary lookups, extra calls FCM does not need.
            self._credentials.refresh(self._token_request)
        except google.auth.exceptions.RefreshError as exc:
            retryable = bool(getattr(exc, "retryable", False))
            raise FcmError(
                UNAVAILABLE if retryable else UNAUTHENTICATED,
                f"The token endpoint {self.token_uri} refused the key of {self.client_email} "
                f"({_refusal_reason(exc, self._token_request.last_status)}).",
                status=self._token_request.last_status,
                permanent=not retryable,
            ) from exc
        except google.auth.exceptions.TransportError as exc:
            cause = exc.args[0] if exc.args else exc
            code = TIMEOUT if isinstance(cause, requests.Timeout) else CONNECTION_ERROR
            raise FcmError(
                code,
                f"Could not get an access token from {self.token_uri}: "
                f"{_transport_reason(cause, self.token_timeout)}.",
            ) from exc
        logger.debug("New FCM access token for %s", self.client_email)

    # Sending ---------------------------------------------------------------------

    def send(self, message: dict, *, validate_only: bool = False) -> str:
        """Send one Message; return its name, "projects/{project}/messages/{id}".

        ``validate_only`` has FCM check the message without delivering it. Raises
        FcmError for every failure, network ones included. A 401 (our token was
        rejected) fetches a new token and tries once more.
        """
        body: dict = {"message": message}
        if validate_only:
            body["validate_only"] = True
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

        token = self.access_token()
        response = self._post(payload, token)
        if response.status == 200:
            return self._message_name(response)
        error = error_from_response(response)
        if error.code == UNAUTHENTICATED:
            response = self._post(payload, self._replace_rejected_token(token))
            if response.status == 200:
                return self._message_name(response)
            error = error_from_response(response)
        raise error

    @metrics.timed_fcm_request
    def _post(self, payload: bytes, token: str) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.urlopen(
                "POST",
                self._target,
                body=payload,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json; charset=UTF-8",
                },
                assert_same_host=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # refused, unreachable, DNS
            raise FcmError(CONNECTION_ERROR, f"Could not connect to {self.api_url}: {exc}") from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise FcmError(TIMEOUT, f"Could not connect to {self.api_url} within {self.timeout}s.") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise FcmError(
                TIMEOUT,
                f"{self.api_url} did not answer within {self.timeout}s; the message may or "
                "may not have been delivered.",
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise FcmError(CONNECTION_ERROR, f"{self.api_url}: {exc}") from exc

    @staticmethod
    def _message_name(response: urllib3.BaseHTTPResponse) -> str:
        try:
            name = json.loads(response.data)["name"]
        except (ValueError, KeyError, TypeError):
            name = None
        if not isinstance(name, str):
            raise FcmError(INTERNAL, "FCM answered 200 without a message name.", status=200)
        return name

    def send_many(self, messages: list[dict], *, validate_only: bool = False) -> list[str | FcmError]:
        """Send every message; return, in order, each one's name or the FcmError it met.

        Here: ``send`` from a pool of ``pool_size`` threads, made once per client and
        kept. (The curl transport sends them all from the calling thread instead.)
        """
        with self._token_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._pool_size, thread_name_prefix="herald-fcm-send"
                )

        def attempt(message: dict) -> str | FcmError:
            try:
                return self.send(message, validate_only=validate_only)
            except FcmError as error:
                return error

        return list(self._executor.map(attempt, messages))


class _CurlResponse:
    """What error_from_response and _message_name read from an answer, filled by libcurl."""

    __slots__ = ("status", "data", "reason", "headers")

    def __init__(self, status: int, data: bytes, header_lines: list[bytes]):
        self.status = status
        self.data = data
        self.reason = ""
        # Only read for errors (Retry-After): parsed then, not for every 200.
        self.headers = _CurlHeaders(header_lines)


class _CurlHeaders:
    __slots__ = ("lines",)

    def __init__(self, lines: list[bytes]):
        self.lines = lines

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower().encode()
        found = default
        for line in self.lines:
            key, colon, value = line.partition(b":")
            if colon and key.strip().lower() == wanted:
                found = value.strip().decode("latin-1")
        return found


class CurlFcmClient(FcmClient):
    """The same client over libcurl (pycurl): HTTP/2 multiplexing, the HTTP work in C.

    The default transport (``HERALD_FCM_TRANSPORT=curl``; pycurl is a dependency, its
    wheels bundle a libcurl with HTTP/2). ``send_many`` drives up to ``pool_size``
    requests at once from the calling thread through curl's multi interface: over
    HTTPS they become streams of a few HTTP/2 connections (FCM's front ends allow about
    100 streams per connection; curl opens another when one is full), over plain HTTP
    (the sandbox) keep-alive HTTP/1.1 connections. ``send`` (one message, any thread)
    borrows an idle handle, and its connection, for one blocking request. Same answers
    as FcmClient: a name, or an FcmError with FCM's code, permanence and Retry-After; a
    rejected token is replaced once. bench/http_clients.py measured ``send_many`` at
    about a tenth of the CPU per message of urllib3 with threads.

    libcurl reads the proxy from the environment itself (``https_proxy``, ``no_proxy``;
    never an upper-case ``HTTP_PROXY``); the CA bundle is requests', as for urllib3.
    """

    def _open_transport(self, pool_size: int) -> None:
        try:
            import pycurl
        except ImportError:
            raise FcmError(
                CONFIGURATION,
                "HERALD_FCM_TRANSPORT is 'curl' but pycurl is not installed (pip install pycurl, "
                "or HERALD_FCM_TRANSPORT=urllib3).",
                permanent=True,
            ) from None
        self._curl = pycurl
        self._in_flight = max(1, pool_size)
        self._ca_file = os.environ.get("REQUESTS_CA_BUNDLE") or requests.certs.where()
        self._idle_handles: list = []  # for send(), one per thread sending at once
        self._multis: list = []  # idle (multi, handles) pairs, reused by send_many
        self._all_handles: list = []  # every handle made, so that close() closes them
        self._handles_lock = threading.Lock()

    def close(self) -> None:
        with self._handles_lock:
            handles, self._all_handles = self._all_handles, []
            multis, self._multis = self._multis, []
            self._idle_handles = []
        for multi, _ in multis:
            multi.close()
        for handle in handles:
            handle.close()
        self._token_request.session.close()

    def _handle(self):
        curl = self._curl
        handle = curl.Curl()
        handle.setopt(curl.URL, self.send_url)
        handle.setopt(curl.HTTP_VERSION, curl.CURL_HTTP_VERSION_2TLS)  # HTTP/1.1 over plain http
        if self.send_url.startswith("https:"):
            # Wait to multiplex on a connection being opened rather than open one per
            # request. (Over plain HTTP there is no HTTP/2 to wait for: a request would
            # queue behind another's answer.)
            handle.setopt(curl.PIPEWAIT, 1)
        handle.setopt(curl.POST, 1)
        handle.setopt(curl.NOSIGNAL, 1)
        handle.setopt(curl.FOLLOWLOCATION, 0)
        handle.setopt(curl.CAINFO, self._ca_file)
        handle.setopt(curl.CONNECTTIMEOUT_MS, int(self.timeout * 1000))
        handle.setopt(curl.TIMEOUT_MS, int(self.timeout * 1000))
        handle.setopt(curl.PROTOCOLS, curl.PROTO_HTTP | curl.PROTO_HTTPS)
        with self._handles_lock:
            self._all_handles.append(handle)
        return handle

    def _prepare(self, handle, payload: bytes, token: str) -> tuple[list[bytes], list[bytes]]:
        curl = self._curl
        chunks: list[bytes] = []
        header_lines: list[bytes] = []
        handle.setopt(
            curl.HTTPHEADER,
            [
                f"Authorization: Bearer {token}",
                "Content-Type: application/json; charset=UTF-8",
                "Expect:",  # no 100-continue round trip before a body over HTTP/1.1
            ],
        )
        handle.setopt(curl.POSTFIELDS, payload)
        handle.setopt(curl.WRITEFUNCTION, chunks.append)
        handle.setopt(curl.HEADERFUNCTION, header_lines.append)
        return chunks, header_lines

    def _error(self, number: int, text: str) -> FcmError:
        curl = self._curl
        if number == curl.E_OPERATION_TIMEDOUT:
            if "onnect" in text:  # "Connection timed out after …", "Failed to connect … timed out"
                return FcmError(TIMEOUT, f"Could not connect to {self.api_url} within {self.timeout}s.")
            return FcmError(
                TIMEOUT,
                f"{self.api_url} did not answer within {self.timeout}s; the message may or "
                "may not have been delivered.",
            )
        if number in (curl.E_COULDNT_CONNECT, curl.E_COULDNT_RESOLVE_HOST, curl.E_COULDNT_RESOLVE_PROXY):
            return FcmError(CONNECTION_ERROR, f"Could not connect to {self.api_url}: {text}")
        return FcmError(CONNECTION_ERROR, f"{self.api_url}: {text}")

    @metrics.timed_fcm_request
    def _post(self, payload: bytes, token: str) -> _CurlResponse:
        # A handle (and the connection it keeps) from those idle, or a new one: as many as
        # threads send at once, whoever the threads are.
        with self._handles_lock:
            handle = self._idle_handles.pop() if self._idle_handles else None
        if handle is None:
            handle = self._handle()
        try:
            chunks, header_lines = self._prepare(handle, payload, token)
            try:
                handle.perform()  # pycurl lets go of the GIL meanwhile
            except self._curl.error as exc:
                number, text = exc.args
                raise self._error(number, text) from exc
            return _CurlResponse(handle.getinfo(self._curl.RESPONSE_CODE), b"".join(chunks), header_lines)
        finally:
            with self._handles_lock:
                self._idle_handles.append(handle)

    def send_many(self, messages: list[dict], *, validate_only: bool = False) -> list[str | FcmError]:
        """Send every message from this thread, many at once; return, in order, each one's
        name or the FcmError it met. A token FCM rejects is replaced once, and the
        messages it failed are sent again with the new one."""
        payloads = []
        for message in messages:
            body: dict = {"message": message}
            if validate_only:
                body["validate_only"] = True
            payloads.append(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        # A token that cannot be had is every message's answer, as it is in `send` (a
        # worker retries each delivery), not an exception that fails the whole chunk.
        try:
            token = self.access_token()
        except FcmError as error:
            return [error] * len(payloads)
        results: list = self._exchange(payloads, range(len(payloads)), token)
        rejected = [
            i
            for i, result in enumerate(results)
            if isinstance(result, FcmError) and result.code == UNAUTHENTICATED
        ]
        if rejected:
            try:
                token = self._replace_rejected_token(token)
            except FcmError as error:
                for i in rejected:
                    results[i] = error
                return results
            for i, result in zip(rejected, self._exchange(payloads, rejected, token), strict=True):
                results[i] = result
        return results

    def _exchange(self, payloads: list[bytes], indexes, token: str) -> list[str | FcmError]:
        """POST payloads[i] for each i in indexes, up to pool_size at once; the outcomes in order."""
        curl = self._curl
        with self._handles_lock:
            multi, handles = self._multis.pop() if self._multis else (None, [])
        if multi is None:
            multi = curl.CurlMulti()
            multi.setopt(curl.M_PIPELINING, curl.PIPE_MULTIPLEX)
        pending = iter(indexes)
        outcomes: dict[int, str | FcmError] = {}
        idle = list(handles)
        running = 0

        def start(handle) -> bool:
            i = next(pending, None)
            if i is None:
                idle.append(handle)
                return False
            handle.herald = (i, *self._prepare(handle, payloads[i], token), time.perf_counter())
            multi.add_handle(handle)
            return True

        try:
            while len(handles) < self._in_flight and len(handles) < len(indexes):
                handles.append(self._handle())
                idle.append(handles[-1])
            starting, idle = idle, []
            for handle in starting:
                running += start(handle)
            while running:
                while multi.perform()[0] == curl.E_CALL_MULTI_PERFORM:
                    pass
                while True:
                    queued, done, failed = multi.info_read()
                    for handle in done:
                        i, chunks, header_lines, started = handle.herald
                        response = _CurlResponse(
                            handle.getinfo(curl.RESPONSE_CODE), b"".join(chunks), header_lines
                        )
                        outcomes[i] = self._outcome(response, started)
                    for handle, number, text in failed:
                        i, _, _, started = handle.herald
                        outcomes[i] = self._failure(self._error(number, text), started)
                    for handle in [*done, *(failure[0] for failure in failed)]:
                        multi.remove_handle(handle)
                        handle.herald = None
                        running -= 1
                        running += start(handle)
                    if not queued:
                        break
                if running:
                    # Until a socket is ready or curl's next timer is due (-1: none); a
                    # fixed wait would leave curl's timers late and cap each connection.
                    wait = multi.timeout()
                    multi.select(1.0 if wait < 0 else min(1.0, wait / 1000))
        except BaseException:
            for handle in handles:
                try:
                    multi.remove_handle(handle)
                except curl.error:
                    pass
            multi.close()
            raise
        with self._handles_lock:
            self._multis.append((multi, handles))
        return [outcomes[i] for i in indexes]

    def _outcome(self, response: _CurlResponse, started: float) -> str | FcmError:
        metrics.FCM_LATENCY.labels(str(response.status)).observe(time.perf_counter() - started)
        if response.status == 200:
            try:
                return self._message_name(response)
            except FcmError as error:
                return error
        return error_from_response(response)

    @staticmethod
    def _failure(error: FcmError, started: float) -> FcmError:
        metrics.FCM_LATENCY.labels(error.code).observe(time.perf_counter() - started)
        return error


def make_client(
    *, service_account_info: dict, api_url: str | None = None, pool_size: int = 32, timeout: float = 10.0
) -> FcmClient:
    """An FcmClient over the transport HERALD_FCM_TRANSPORT names: "curl" (CurlFcmClient,
    the default) or "urllib3" (FcmClient, the fallback)."""
    transport = getattr(settings, "HERALD_FCM_TRANSPORT", "curl")
    if transport not in TRANSPORTS:
        raise FcmError(
            CONFIGURATION,
            f"HERALD_FCM_TRANSPORT must be one of {', '.join(TRANSPORTS)}, not {transport!r}.",
            permanent=True,
        )
    return TRANSPORTS[transport](
        service_account_info=service_account_info, api_url=api_url, pool_size=pool_size, timeout=timeout
    )


TRANSPORTS: dict[str, type[FcmClient]] = {"urllib3": FcmClient, "curl": CurlFcmClient}


# --- Shared clients --------------------------------------------------------------------

# key (a tenant's pk) -> (fingerprint of the credential it was built from, client). One
# client per credential means one access token and one connection pool per credential.
_clients: dict[Hashable, tuple[tuple, FcmClient]] = {}
_clients_lock = threading.Lock()


def shared_client(
    *, key: Hashable, fingerprint: tuple, service_account_info: Callable[[], dict]
) -> FcmClient:
    """The FcmClient kept under `key`, as long as it was built from the same `fingerprint`.

    Otherwise a new client is built from ``service_account_info()`` (called only then) and
    kept instead. Raises FcmError(code="CONFIGURATION") for an unusable service account.
    """
    # Settings are part of the key so that tests overriding them get a fresh client.
    fingerprint += (settings.FCM_API_URL, settings.FCM_TOKEN_URL, settings.HERALD_FCM_TRANSPORT)

    with _clients_lock:
        cached = _clients.get(key)
    if cached and cached[0] == fingerprint:
        return cached[1]

    client = make_client(
        service_account_info=service_account_info(),
        pool_size=settings.FCM_HTTP_POOL_SIZE,
        timeout=settings.FCM_HTTP_TIMEOUT,
    )
    with _clients_lock:
        cached = _clients.get(key)
        if cached and cached[0] == fingerprint:
            client.close()  # another thread built one first: share its token
            return cached[1]
        _clients[key] = (fingerprint, client)
    return client


def forget_clients() -> None:
    """Drop every cached client and close its connections (tests, settings changes)."""
    with _clients_lock:
        clients = [client for _, client in _clients.values()]
        _clients.clear()
    for client in clients:
        client.close()


# --- Checking a credential -----------------------------------------------------------


def check_service_account(info: dict) -> tuple[bool, str]:
    """Prove a service account works: get a fresh token, then a validate_only send.

    The test message goes to a topic with validate_only, so nothing is delivered.
    Returns (ok, what was found in words a tenant admin can act on); raises FcmError
    (CONFIGURATION) when the service account cannot even make a client.
    """
    # A fresh client, not the shared one: a cached token would hide a revoked key.
    client = make_client(service_account_info=info, pool_size=1, timeout=settings.FCM_HTTP_TIMEOUT)
    try:
        return _check(client)
    finally:
        client.close()


def _check(client: FcmClient) -> tuple[bool, str]:
    project, who = client.project_id, client.client_email
    try:
        client.access_token(fresh=True)
    except FcmError as error:
        if error.code == UNAUTHENTICATED:
            return False, (
                f"{error.detail} The key may have been deleted or disabled, or this server's clock "
                "is wrong. Generate a new key under Project settings > Service accounts and upload it."
            )
        return False, error.detail  # it names the token endpoint and the reason already
    message = build_message(
        target=FcmTarget(topic=CHECK_TOPIC),
        title="Herald credential check",
        body="Sent with validate_only: nobody receives this.",
        data={},
    )
    try:
        client.send(message, validate_only=True)
    except FcmError as error:
        if error.code in (PERMISSION_DENIED, NOT_FOUND):
            return False, (
                f"Got an access token as {who}, but FCM refused to send for project "
                f"{project!r} ({error.code}: {error.detail}). Check that the Firebase Cloud "
                "Messaging API is enabled for the project and that this service account "
                "belongs to it."
            )
        return False, (
            f"Got an access token as {who}, but FCM rejected a test message for project "
            f"{project!r}: {error.code}: {error.detail}"
        )
    return True, (
        f"Works: got an access token as {who} and FCM accepted a test message for project "
        f"{project!r} (validate_only, nothing was delivered)."
    )
