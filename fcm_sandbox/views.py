"""The sandbox's endpoints: Google's token endpoint, FCM's messages:send, the inbox."""

import json
import re
import secrets
import time

from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from fcm_sandbox import schema
from fcm_sandbox.database import in_database_thread
from fcm_sandbox.models import SandboxMessage, hash_target
from fcm_sandbox.oauth import JWT_BEARER, OAuthError, verify_assertion
from fcm_sandbox.state import state

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
AUTH_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


# --- Google's error bodies ------------------------------------------------------------


def google_error(
    http: int,
    status: str,
    message: str,
    *,
    error_code: str | None = None,
    details: list | None = None,
    headers: dict | None = None,
) -> JsonResponse:
    """``{"error": {"code", "message", "status", "details"}}``, as googleapis.com answers."""
    all_details = [{"@type": FCM_ERROR, "errorCode": error_code}] if error_code else []
    all_details += details or []
    error: dict = {"code": http, "message": message, "status": status}
    if all_details:
        error["details"] = all_details
    response = JsonResponse({"error": error}, status=http, headers=headers)
    response["Content-Type"] = "application/json; charset=UTF-8"
    return response


def _unauthenticated(message: str, reason: str) -> JsonResponse:
    return google_error(
        401,
        "UNAUTHENTICATED",
        f"{message} {AUTH_HELP}",
        details=[
            {
                "@type": ERROR_INFO,
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {
                    "service": "fcm.googleapis.com",
                    "method": "google.firebase.fcm.v1.FcmService.SendMessage",
                },
            }
        ],
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def not_found(request: HttpRequest, exception=None) -> JsonResponse:
    return google_error(404, "NOT_FOUND", f"The requested URL {request.path} was not found on this server.")


def _bad_request(violations: list[tuple[str, str]], *, error_code: str | None = None) -> JsonResponse:
    return google_error(
        400,
        "INVALID_ARGUMENT",
        "\n".join(text for _, text in violations),
        error_code=error_code,
        details=[
            {
                "@type": BAD_REQUEST,
                "fieldViolations": [{"field": f, "description": d} for f, d in violations],
            }
        ],
    )


# --- Fault injection ------------------------------------------------------------------

# (token prefix, HTTP status, API status, errorCode, message). Longer prefixes first.
FAULTS = [
    ("sandbox-unregistered", 404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    ("sandbox-sender-mismatch", 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
    (
        "sandbox-invalid",
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    (
        "sandbox-quota",
        429,
        "RESOURCE_EXHAUSTED",
        "QUOTA_EXCEEDED",
        "Quota exceeded: too many messages to this device.",
    ),
    ("sandbox-unavailable-once", 503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
    ("sandbox-unavailable", 503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
    ("sandbox-internal", 500, "INTERNAL", "INTERNAL", "Internal error encountered."),
    (
        "sandbox-third-party-auth",
        401,
        "UNAUTHENTICATED",
        "THIRD_PARTY_AUTH_ERROR",
        "Auth error from APNS or Web Push Service",
    ),
]
_QUOTA = re.compile(r"^sandbox-quota(?:-(\d+))?")
_SLOW = re.compile(r"^sandbox-slow(?:-(\d+))?")


def _fault(project: str, target_kind: str, target: str) -> JsonResponse | None:
    """The injected failure for a device token, if it asks for one (sleeps for slow ones)."""
    if target_kind not in ("token", "fid") or not target.startswith("sandbox-"):
        return None
    slow = _SLOW.match(target)
    if slow:
        time.sleep(int(slow.group(1) or 3000) / 1000)
        return None
    for prefix, http, status, code, message in FAULTS:
        if not target.startswith(prefix):
            continue
        headers = {}
        if prefix == "sandbox-quota":
            headers["Retry-After"] = _QUOTA.match(target).group(1) or "60"
        elif prefix == "sandbox-unavailable-once":
            if not state.first_failure(f"{project}/{target}"):
                return None
        elif prefix == "sandbox-unavailable":
            headers["Retry-After"] = "30"
        details = []
        if code == "INVALID_ARGUMENT":
            details = [
                {
                    "@type": BAD_REQUEST,
                    "fieldViolations": [{"field": f"message.{target_kind}", "description": message}],
                }
            ]
        return google_error(http, status, message, error_code=code, details=details, headers=headers)
    return None


# --- Endpoints ------------------------------------------------------------------------


@csrf_exempt
def token(request: HttpRequest) -> JsonResponse:
    """OAuth 2.0 token endpoint: a signed service-account JWT in, a bearer token out."""
    if request.method != "POST":
        return JsonResponse({"error": "invalid_request", "error_description": "Use POST."}, status=405)
    grant_type = request.POST.get("grant_type", "")
    if grant_type != JWT_BEARER:
        return JsonResponse(
            {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant_type}"},
            status=400,
        )
    assertion = request.POST.get("assertion", "")
    if not assertion:
        return JsonResponse(
            {"error": "invalid_request", "error_description": "Missing required parameter: assertion"},
            status=400,
        )
    try:
        account = _in_database(request, verify_assertion, assertion, token_urls=_urls_of(request))
    except OAuthError as exc:
        return JsonResponse(exc.body(), status=exc.status)
    access_token, lifetime = state.issue_token(
        client_email=account.client_email, project_id=account.project_id
    )
    return JsonResponse(
        {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer"},
        headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"},
    )


def _in_database(request: HttpRequest, function, *args, **kwargs):
    """Database work runs on the server's few database threads, never the request's own."""
    threads = getattr(request, "database_threads", None)
    return function(*args, **kwargs) if threads is None else threads.run(function, *args, **kwargs)


def _urls_of(request: HttpRequest) -> set[str]:
    # The URL as the client addressed it (Host header), without Django's host check:
    # the sandbox answers to whatever name it is reached by.
    scheme = "https" if request.is_secure() else "http"
    hosts = {
        request.META.get("HTTP_HOST", ""),
        f"{request.META.get('SERVER_NAME')}:{request.META.get('SERVER_PORT')}",
    }
    return {f"{scheme}://{host}{request.path}" for host in hosts if host}


@csrf_exempt
def send(request: HttpRequest, project: str) -> JsonResponse:
    """FCM HTTP v1 ``projects.messages.send``."""
    state.count_send()
    if request.method != "POST":
        return google_error(405, "INVALID_ARGUMENT", f"Method {request.method} is not allowed; use POST.")
    if state.settings.latency_ms:
        time.sleep(state.settings.latency_ms / 1000)

    scheme, _, bearer = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not bearer.strip():
        return _unauthenticated(
            "Request is missing required authentication credential.", "CREDENTIALS_MISSING"
        )
    grant, expired = state.grant(bearer.strip())
    if grant is None:
        return _unauthenticated(
            "Request had invalid authentication credentials.", "ACCESS_TOKEN_TYPE_UNSUPPORTED"
        )
    if expired:
        return _unauthenticated("Request had invalid authentication credentials.", "ACCESS_TOKEN_EXPIRED")
    if grant.project_id != project:
        return google_error(
            403,
            "PERMISSION_DENIED",
            f"Permission 'cloudmessaging.messages.create' denied on resource "
            f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            details=[
                {
                    "@type": ERROR_INFO,
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "cloudresourcemanager.googleapis.com",
                    "metadata": {
                        "permission": "cloudmessaging.messages.create",
                        "resource": f"projects/{project}",
                    },
                }
            ],
        )

    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        text = f"Invalid JSON payload received. {exc}"
        return _bad_request([("", text)])
    try:
        message, validate_only = schema.parse_send_request(body)
    except schema.PayloadError as exc:
        return _bad_request(exc.violations)
    except schema.MessageError as exc:
        return _bad_request([(exc.field, str(exc))], error_code="INVALID_ARGUMENT")

    target_kind = next(name for name in schema.TARGETS if name in message)
    target = message[target_kind]
    failure = _fault(project, target_kind, target)
    if failure is not None:
        return failure
    random_failure = state.random_failure()
    if random_failure == 503:
        return google_error(
            503, "UNAVAILABLE", "The service is currently unavailable.", error_code="UNAVAILABLE"
        )
    if random_failure == 500:
        return google_error(500, "INTERNAL", "Internal error encountered.", error_code="INTERNAL")

    if validate_only:
        # What FCM answers to a dry run: a well-formed name that names nothing.
        return JsonResponse({"name": f"projects/{project}/messages/fake_message_id"})
    name = f"projects/{project}/messages/0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
    notification = message.get("notification") or {}
    data = message.get("data") or {}
    _in_database(
        request,
        SandboxMessage.objects.create,
        name=name,
        project_id=project,
        sender=grant.client_email,
        target_kind=target_kind,
        target=target,
        title=notification.get("title") or data.get("title", ""),
        body=notification.get("body") or data.get("body", ""),
        data_only="notification" not in message,
        message=message,
    )
    return JsonResponse({"name": name})


# --- The virtual device ---------------------------------------------------------------

INBOX_LIMIT = 200


@in_database_thread
def inbox(request: HttpRequest) -> HttpResponse:
    """Received messages rendered like a phone's notification shade; ?token= filters."""
    target = request.GET.get("token", "").strip()
    messages = SandboxMessage.objects.all()
    if target:
        messages = messages.filter(target_hash=hash_target(target))
    recent_targets = (
        SandboxMessage.objects.values("target_kind", "target")
        .annotate(count=Count("id"), last=Max("id"))
        .order_by("-last")[:30]
    )
    return render(
        request,
        "sandbox/inbox.html",
        {
            "target": target,
            "messages": messages[:INBOX_LIMIT],
            "total": messages.count(),
            "recent_targets": recent_targets,
            "settings": state.settings,
            "refresh": request.GET.get("refresh", ""),
        },
    )


@in_database_thread
def inbox_json(request: HttpRequest) -> JsonResponse:
    """What one token (or FID) received: ``?token=…&after=<id>&limit=<n>``, oldest first.

    Poll with ``after`` set to the last id seen to get only new messages.
    """
    target = request.GET.get("token", "")
    if not target:
        return JsonResponse(
            {"error": "missing_token", "detail": "Pass ?token=<registration token or FID>."}, status=400
        )
    try:
        after = int(request.GET.get("after", "0"))
        limit = max(1, min(int(request.GET.get("limit", "100")), 1000))
    except ValueError:
        return JsonResponse({"error": "invalid_field", "detail": "after and limit are integers."}, status=400)
    rows = SandboxMessage.objects.filter(target_hash=hash_target(target), id__gt=after).order_by("id")[:limit]
    return JsonResponse({"token": target, "messages": [row.as_json() for row in rows]})


@in_database_thread
def status(request: HttpRequest) -> JsonResponse:
    """The sandbox's settings and counters since it started (or was last configured)."""
    return JsonResponse(
        {
            "settings": vars(state.settings),
            "token_requests": state.token_requests,
            "send_requests": state.send_requests,
            "messages_stored": SandboxMessage.objects.count(),
        }
    )


def no_icon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)
