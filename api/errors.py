"""The HTTP plumbing every API endpoint shares: body parsing and errors.

Every error leaves Herald as ``{"error": "<stable_code>", "detail": "<human text>"}``,
plus ``"field"`` when one field is to blame, so that clients can branch on
``error`` and people can read ``detail``.
"""

import json
import logging
import re

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.template.response import TemplateResponse
from django.views import defaults
from rest_framework import exceptions, parsers
from rest_framework.response import Response

log = logging.getLogger("herald.api")


class ApiError(exceptions.APIException):
    """A failure a client can act on: an HTTP status, a stable code, a sentence."""

    status_code = 400
    default_code = "bad_request"
    default_detail = "The request is not valid."

    def __init__(self, detail=None, *, code=None, status=None, field=None, headers=None):
        super().__init__(detail, code)
        self.error_code = code or self.default_code
        if status is not None:
            self.status_code = status
        self.field = field
        self.headers = headers or {}


class PayloadTooLarge(ApiError):
    status_code = 413
    default_code = "payload_too_large"


class LimitedJSONParser(parsers.JSONParser):
    """A JSON parser that reads at most API_MAX_BODY_BYTES and names what went wrong."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
        return parse_json(raw)


def parse_json(raw: bytes):
    """A JSON body (UTF-8), as every API endpoint reads it; ApiError (400) naming what is wrong."""
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # json.loads' own check, worded as it words it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        data = _decoder.decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(f"The body is not valid JSON: {exc}", code="malformed_json") from None
    except RecursionError:  # [[[[…]]]]: a few KB can nest deeper than the parser goes
        raise ApiError("The body is nested too deeply.", code="malformed_json") from None
    if _SURROGATE_ESCAPE.search(raw):
        _reject_lone_surrogates(data)
    return data


# The only way a surrogate (U+D800–U+DFFF) gets into the parsed body: a \uD800–\uDFFF escape
# (strict UTF-8 decoding refuses an encoded one). A body without one needs no walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_lone_surrogates(data) -> None:
    """Refuse a string (a key too) holding half of a UTF-16 pair: JSON's "\\ud800" escape
    parses to a str that cannot be encoded, hashed or stored. One check here covers every
    field of every endpoint; the error names the top-level field that holds it. Iterative,
    so that deep nesting cannot exhaust the stack."""
    roots = data.items() if isinstance(data, dict) else [(None, data)]
    for field, value in roots:
        stack = [field, value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if _has_surrogate(item):
                    detail = "Strings must be valid Unicode; a lone surrogate (\\ud800–\\udfff) is not."
                    if isinstance(field, str) and not _has_surrogate(field):
                        raise ApiError(f"{field}: {detail}", code="invalid_field", field=field)
                    raise ApiError(detail, code="malformed_json")
            elif isinstance(item, dict):
                stack.extend(item)
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# One decoder for every body: json.loads with a keyword builds a new one (and its scanner) per call.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def body_object(request) -> dict:
    """The request body, which must be a JSON object."""
    data = request.data
    if not isinstance(data, dict):
        raise ApiError("The body must be a JSON object.", code="malformed_json")
    return data


# --- Errors -------------------------------------------------------------------------


def exception_handler(exc, context):
    """Turn every API exception into Herald's JSON error body."""
    # Imported here: rest_framework.views imports this module's parser at class creation.
    from rest_framework.views import set_rollback

    if isinstance(exc, Http404):
        exc = ApiError("Not found.", code="not_found", status=404)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait))
    headers.update(getattr(exc, "headers", {}) or {})

    if isinstance(exc, ApiError):
        body = {"error": exc.error_code, "detail": str(exc.detail)}
        if exc.field:
            body["field"] = exc.field
    elif isinstance(exc, exceptions.ValidationError):
        body = _validation_body(exc.detail)
    else:
        body = {"error": _CODES.get(type(exc), exc.default_code), "detail": _text(exc.detail)}

    set_rollback()
    request = context.get("request")
    key = getattr(request, "_auth", None)
    # What happened and to whom, never what was sent: bodies carry keys and tokens.
    log.info(
        "api error",
        extra={
            "status": exc.status_code,
            "error": body["error"],
            "field": body.get("field"),
            "path": getattr(request, "path", None),
            "method": getattr(request, "method", None),
            "tenant": key.tenant.tenant_id if key is not None else None,
            "key_prefix": key.prefix if key is not None else None,
        },
    )
    return Response(body, status=exc.status_code, headers=headers)


_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


# --- Errors outside DRF: paths no view matches, and the last resort ---------------------


def is_browser_path(request) -> bool:
    return request.path.startswith(("/admin/", "/api/docs/"))


def not_found(request, exception=None):
    """handler404: an API client asking for /api/v1/messages/abc gets JSON, not an HTML page."""
    if request.path.startswith("/admin/"):
        return _admin_not_found(request)
    if is_browser_path(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"error": "not_found", "detail": f"No endpoint at {request.path}."}, status=404)


def _admin_not_found(request):
    """The admin's 404 in the admin's frame: header, user tools, sidebar and a way back."""
    from django.contrib import admin  # the admin site's frame, not an app of Herald's

    response = TemplateResponse(request, "admin/404.html", admin.site.each_context(request), status=404)
    return response.render()


def server_error(request):
    """handler500: should never run; when it does, API clients still get JSON."""
    if is_browser_path(request):
        return defaults.server_error(request)
    return JsonResponse(
        {"error": "server_error", "detail": "Herald failed; the error is logged."}, status=500
    )


def _text(detail) -> str:
    if isinstance(detail, list):
        return " ".join(_text(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(f"{k}: {_text(v)}" for k, v in detail.items())
    return str(detail)


def _validation_body(detail) -> dict:
    """Name the first field at fault; list every problem under "errors"."""
    if not isinstance(detail, dict):
        return {"error": "invalid_request", "detail": _text(detail)}
    field, problems = next(iter(detail.items()))
    first = problems[0] if isinstance(problems, list) and problems else problems
    missing = getattr(first, "code", None) in ("required", "null")
    if field in ("non_field_errors", "__all__"):
        return {"error": "invalid_request", "detail": _text(problems), "errors": detail}
    return {
        "error": "missing_field" if missing else "invalid_field",
        "detail": f"{field}: {_text(first if isinstance(first, (str, dict)) else problems)}",
        "field": field,
        "errors": detail,
    }
