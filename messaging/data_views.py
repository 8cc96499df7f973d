"""A user's data on request (GET and DELETE /api/v1/users/{id}) and CSV exports.

Server keys only; another tenant's user or message is a 404 (and deleting it removes
nothing, exactly as for an id that never existed).
"""

from datetime import UTC

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.csv_export import IgnoreAcceptNegotiation, csv_response
from api.errors import ApiError
from api.fields import RFC3339DateTimeField
from api.openapi import ERROR_RESPONSES
from devices.models import Platform
from devices.selectors import USER_EXPORT_COLUMNS, filtered_app_users, user_export_rows
from messaging import user_data
from messaging.exports import DELIVERY_EXPORT_COLUMNS, delivery_export_rows
from messaging.models import Message
from messaging.views import ServerEndpoint
from tenants.codes import COUNTRIES, LANGUAGES

MAX_APP_USER_ID = 255


class DeviceDataSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    platform = serializers.ChoiceField(choices=Platform.choices)
    token_kind = serializers.CharField()
    token_suffix = serializers.SerializerMethodField(help_text="The token's last 12 characters.")
    push_permission = serializers.BooleanField()
    is_active = serializers.BooleanField()
    deactivated_at = serializers.DateTimeField(allow_null=True)
    deactivation_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    token_updated_at = serializers.DateTimeField()

    def get_token_suffix(self, device) -> str:
        return device.token[-12:]


class EventDataSerializer(serializers.Serializer):
    name = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    session_id = serializers.CharField()
    params = serializers.DictField(child=serializers.JSONField())


class DeliveryDataSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    title = serializers.CharField(source="message.title")
    status = serializers.CharField()
    error_code = serializers.CharField()
    sent_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)


class AppUserDataSerializer(serializers.Serializer):
    app_user_id = serializers.CharField(source="user.app_user_id")
    is_anonymous = serializers.BooleanField(source="user.is_anonymous")
    language = serializers.CharField(source="user.language")
    country = serializers.CharField(source="user.country")
    timezone = serializers.CharField(source="user.timezone")
    first_seen_at = serializers.DateTimeField(source="user.first_seen_at")
    last_seen_at = serializers.DateTimeField(source="user.last_seen_at")
    devices = DeviceDataSerializer(many=True)
    event_count = serializers.IntegerField()
    events = EventDataSerializer(many=True, help_text="The most recent 100, newest first.")
    delivery_count = serializers.IntegerField()
    deliveries = DeliveryDataSerializer(
        many=True, help_text="Pushes to the user's devices, the most recent 100, newest first."
    )


class RemovedSerializer(serializers.Serializer):
    app_users = serializers.IntegerField()
    devices = serializers.IntegerField()
    events = serializers.IntegerField()
    token_rotations = serializers.IntegerField()
    deliveries_anonymised = serializers.IntegerField()
    messages_scrubbed = serializers.IntegerField(
        help_text="Messages whose audience named the user or a token of theirs, and no longer does."
    )


class ErasureSerializer(serializers.Serializer):
    app_user_id = serializers.CharField()
    removed = RemovedSerializer()


APP_USER_ID = OpenApiParameter(
    "app_user_id",
    str,
    OpenApiParameter.PATH,
    description="Your id of the user (as sent to /events), URL-encoded.",
)


def _storable(app_user_id: str) -> bool:
    # No stored id is longer or holds a NUL (which PostgreSQL cannot even compare).
    return len(app_user_id) <= MAX_APP_USER_ID and "\x00" not in app_user_id


class AppUserDataView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="get_app_user",
        summary="A user's data: profile, devices, recent events and pushes",
        description="What Herald holds about one app user, for support and data-access requests. "
        "Tokens show only their last 12 characters.",
        parameters=[APP_USER_ID],
        responses={200: AppUserDataSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=["users"],
    )
    def get(self, request, app_user_id):
        try:
            if not _storable(app_user_id):
                raise user_data.AppUserNotFound
            data = user_data.app_user_data(tenant=request.auth.tenant, app_user_id=app_user_id)
        except user_data.AppUserNotFound:
            raise ApiError("No such user.", code="not_found", status=404) from None
        return Response(AppUserDataSerializer(data).data)

    @extend_schema(
        operation_id="delete_app_user",
        summary="Delete a user's data",
        description="Deletes the user, their devices, events and token history, and anonymises their "
        "deliveries (message totals stay as they were). Idempotent: deleting a user that is gone (or "
        "never existed) answers 200 with every count 0.",
        parameters=[APP_USER_ID],
        responses={200: ErasureSerializer, **ERROR_RESPONSES(401, 403)},
        tags=["users"],
    )
    def delete(self, request, app_user_id):
        removed = dict.fromkeys(user_data.ERASED_KINDS, 0)
        if _storable(app_user_id):
            removed = user_data.erase_app_user(tenant=request.auth.tenant, app_user_id=app_user_id)
        return Response({"app_user_id": app_user_id, "removed": removed})


class UserFilterSerializer(serializers.Serializer):
    country = serializers.ChoiceField(
        choices=sorted(COUNTRIES), required=False, help_text="ISO 3166-1 alpha-2, e.g. TR."
    )
    language = serializers.ChoiceField(
        choices=sorted(LANGUAGES), required=False, help_text="ISO 639-1, e.g. tr."
    )
    platform = serializers.ChoiceField(
        choices=Platform.choices, required=False, help_text="Users with a device of this platform."
    )
    anonymous = serializers.ChoiceField(
        choices=["true", "false"],
        required=False,
        help_text="Only anonymous users (true) or only named ones (false).",
    )
    seen_after = RFC3339DateTimeField(required=False, help_text="Last seen at or after (RFC 3339).")
    seen_before = RFC3339DateTimeField(required=False, help_text="Last seen before (RFC 3339).")


CSV = OpenApiResponse(OpenApiTypes.STR, description="CSV (RFC 4180) with a header row, streamed.")


class CsvEndpoint(ServerEndpoint, APIView):
    content_negotiation_class = IgnoreAcceptNegotiation


class AppUsersCsvView(CsvEndpoint):
    @extend_schema(
        operation_id="export_app_users",
        summary="Export users matching a filter as CSV",
        description="Columns: " + ", ".join(USER_EXPORT_COLUMNS) + ". Every filter given must match; "
        "an unknown query parameter is a 400. Streamed, so any number of users.",
        parameters=[UserFilterSerializer],
        responses={(200, "text/csv"): CSV, **ERROR_RESPONSES(400, 401, 403)},
        tags=["users"],
    )
    def get(self, request):
        unknown = sorted(set(request.query_params) - set(UserFilterSerializer().fields))
        if unknown:
            raise ApiError("Unknown query parameter.", code="invalid_field", field=unknown[0])
        filters = UserFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        given = dict(filters.validated_data)
        for name in ("seen_after", "seen_before"):
            if name in given:  # PostgreSQL takes offsets up to ±15:59; RFC 3339 allows ±23:59
                given[name] = given[name].astimezone(UTC)
        if "anonymous" in given:
            given["anonymous"] = given["anonymous"] == "true"
        users = filtered_app_users(tenant=request.auth.tenant, **given)
        return csv_response(
            header=USER_EXPORT_COLUMNS,
            rows=user_export_rows(users),
            filename=f"{request.auth.tenant.tenant_id}-users.csv",
        )


class MessageDeliveriesCsvView(CsvEndpoint):
    @extend_schema(
        operation_id="export_message_deliveries",
        summary="Export a message's deliveries as CSV",
        description="Columns: " + ", ".join(DELIVERY_EXPORT_COLUMNS) + ". Streamed, so any number of "
        "deliveries. Deliveries removed by retention are no longer listed (the message keeps its totals).",
        responses={(200, "text/csv"): CSV, **ERROR_RESPONSES(401, 403, 404)},
        tags=["messages"],
    )
    def get(self, request, pk):
        message = get_object_or_404(Message, pk=pk, tenant=request.auth.tenant)
        return csv_response(
            header=DELIVERY_EXPORT_COLUMNS,
            rows=delivery_export_rows(message),
            filename=f"message-{message.pk}-deliveries.csv",
        )
