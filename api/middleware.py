"""Refusing an API request body over API_MAX_BODY_BYTES before anything reads it.

DRF's JSON parsing reads the whole body first (and Django refuses more than
DATA_UPLOAD_MAX_MEMORY_SIZE with its HTML 400 page), so the limit is enforced here, at the
front: by Content-Length when the client declares one, and by reading at most one byte
past the limit when it does not (a chunked body). Every API endpoint answers the JSON 413;
the admin keeps Django's own limits for its forms and uploads.
"""

import io

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse

from api.errors import is_browser_path


def payload_too_large() -> JsonResponse:
    limit = settings.API_MAX_BODY_BYTES
    return JsonResponse(
        {"error": "payload_too_large", "detail": f"The body is larger than {limit} bytes."}, status=413
    )


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_browser_path(request) and (refusal := self._refuse(request)) is not None:
            return refusal
        return self.get_response(request)

    def _refuse(self, request) -> JsonResponse | None:
        limit = settings.API_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH", "")
        if declared:
            if declared.strip().isdigit() and int(declared) > limit:
                return payload_too_large()
            return None
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and "wsgi.input" in request.META:
            # No length declared: Django would read nothing. Read at most limit + 1 bytes
            # and hand the rest of the request a body of known length.
            raw = request.META["wsgi.input"].read(limit + 1)
            if len(raw) > limit:
                return payload_too_large()
            request.META["CONTENT_LENGTH"] = str(len(raw))
            request._stream = LimitedStream(io.BytesIO(raw), len(raw))
        return None
