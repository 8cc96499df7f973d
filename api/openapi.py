"""OpenAPI pieces shared by every endpoint: the error body and the rate limits.

The authentication schemes are described beside the authentication they document, in
`tenants.auth`.
"""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    "Error",
    fields={
        "error": serializers.CharField(help_text="A stable, machine-readable code."),
        "detail": serializers.CharField(help_text="What went wrong, for people."),
        "field": serializers.CharField(required=False, help_text="The field at fault, if one is."),
        "errors": serializers.DictField(required=False, help_text="Every field problem."),
    },
)

_MEANINGS = {
    400: "A field is missing or malformed (`field` names it), or the body is not JSON.",
    401: "Missing or wrong credentials, a revoked key, or an inactive tenant.",
    403: "The key may not do this (an app key on a server endpoint).",
    404: "No such object in this tenant.",
    409: "Conflicts with what is stored.",
    413: "The body is larger than the API accepts.",
    415: "The body is not application/json.",
    429: "Too many requests, or too many failed authentications from this address; see Retry-After.",
}


def ERROR_RESPONSES(*statuses: int) -> dict:  # noqa: N802 - reads like a constant at use sites
    return {s: OpenApiResponse(ErrorSerializer, description=_MEANINGS[s]) for s in statuses}


def document_rate_limits(result, generator, request, public):
    """drf-spectacular postprocessing hook: every API operation is rate limited, so say so.

    Every operation has a rate limit (per client IP or per tenant and IP, per key, or
    /developer/push's own), and every client IP a budget of failed authentications counted
    before authentication, so each operation can answer 429 with a Retry-After header;
    documenting it once here keeps views honest.
    """
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            operation.setdefault("responses", {}).setdefault(
                "429",
                {
                    "description": _MEANINGS[429],
                    "headers": {
                        "Retry-After": {
                            "schema": {"type": "integer"},
                            "description": "Seconds to wait before retrying.",
                        }
                    },
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            )
    return result
