from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError
from api.openapi import ERROR_RESPONSES, ErrorSerializer
from api.pagination import StrictPages
from api.throttling import DeveloperPushThrottle
from audiences.rules import RuleError
from audiences.selectors import segment_rules
from messaging import services, variants
from messaging.models import Audience, Message
from messaging.serializers import (
    DeveloperPushResponseSerializer,
    DeveloperPushSerializer,
    MessageCreateSerializer,
    MessageDetailSerializer,
    MessageSerializer,
    PushOpenedSerializer,
    WinnerSerializer,
)
from tenants.auth import AppEndpoint, IsServerKey, ServerKeyAuthentication


class IsServerKeyOr401(IsServerKey):
    """On /developer/push, as on SmartAppPush, anything but a server key is a bad key: 401."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            raise exceptions.AuthenticationFailed("Invalid server key.")
        return True


class DeveloperPushView(APIView):
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServerKeyOr401]
    # SmartAppPush's 100 requests/s per IP is this endpoint's only limit: the general
    # per-IP budget would refuse a back end well below it.
    throttle_classes = [DeveloperPushThrottle]

    @extend_schema(
        operation_id="developer_push",
        summary="Send a push to one user from a back end",
        description="Every device of the user with push permission gets it. A dedupe_key "
        "repeated for the same app_user_id within 10 minutes does not send again: the answer is "
        "201 with the first push's push_count and `deduplicated: true`.",
        request=DeveloperPushSerializer,
        responses={
            201: DeveloperPushResponseSerializer,
            **ERROR_RESPONSES(400, 401, 413, 415, 429),
            404: OpenApiResponse(description="No device with push permission for that user."),
        },
        tags=["server"],
    )
    def post(self, request):
        tenant = request.auth.tenant
        serializer = DeveloperPushSerializer(
            data=request.data, context={"default_language": tenant.default_language}
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        spec = services.MessageInput(
            title=data["title"],
            body=data["body"],
            data=data.get("extra_data", {}),
            priority=data["priority"],
            schedule_at=data.get("schedule_at"),
            localizations=data.get("localizations", {}),
        )
        try:
            push = services.send_developer_push(
                tenant=tenant,
                app_user_id=data["app_user_id"],
                spec=spec,
                dedupe_key=data.get("dedupe_key", ""),
            )
        except services.NoTargetableDevice:
            raise ApiError(
                "No device with push permission for that user.", code="no_targetable_device", status=404
            ) from None
        answer = {"push_count": push.count, "app_user_id": data["app_user_id"], "app_id": tenant.tenant_id}
        if push.deduplicated:
            answer["deduplicated"] = True  # beside SmartAppPush's fields: nothing was sent this time
        return Response(answer, status=status.HTTP_201_CREATED)


class PushOpenedView(AppEndpoint):
    @extend_schema(
        operation_id="push_opened",
        summary="Report that a push was opened",
        description="Marks the delivery with this tracking_token opened (once; repeats are "
        "harmless) and counts toward its message's open rate.",
        request=PushOpenedSerializer,
        responses={
            200: OpenApiResponse(description='{"success": true}'),
            **ERROR_RESPONSES(400, 401, 413, 415),
            404: OpenApiResponse(description="No delivery with that tracking_token in this tenant."),
        },
        tags=["app"],
    )
    def post(self, request):
        serializer = PushOpenedSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not services.record_open(
            tenant=request.auth.tenant, tracking_token=serializer.validated_data["tracking_token"]
        ):
            raise ApiError("No push with that tracking_token.", code="delivery_not_found", status=404)
        return Response({"success": True})


class ServerEndpoint:
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServerKey]


class MessagePages(StrictPages):
    page_size_query_description = "Messages per page, 1 to 200 (default 50); more is capped at 200."


class MessageListView(ServerEndpoint, generics.ListAPIView):
    serializer_class = MessageSerializer
    pagination_class = MessagePages

    def get_queryset(self):
        return Message.objects.for_tenant(self.request.auth.tenant)

    @extend_schema(
        operation_id="list_messages",
        summary="List messages, newest first",
        responses={
            200: MessageSerializer(many=True),
            **ERROR_RESPONSES(400, 401, 403),
            404: OpenApiResponse(ErrorSerializer, description="The page is past the last one."),
        },
        tags=["messages"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="create_message",
        summary="Create and send (or schedule) a message",
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="The same key within 24 hours returns the first message.",
            )
        ],
        request=MessageCreateSerializer,
        responses={
            202: MessageDetailSerializer,
            200: MessageDetailSerializer,
            **ERROR_RESPONSES(400, 401, 403, 409, 413, 415),
        },
        tags=["messages"],
    )
    def post(self, request):
        serializer = MessageCreateSerializer(
            data=request.data, context={"default_language": request.auth.tenant.default_language}
        )
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > 200:
            raise ApiError("Idempotency-Key is longer than 200 characters.", code="invalid_header")
        spec = serializer.to_input()
        if spec.audience == Audience.SEGMENT:
            _check_segment(tenant=request.auth.tenant, segment_id=spec.audience_params.get("segment_id"))
        # One transaction for the insert and the answer: if the answer cannot be made, no row
        # stays behind an error.
        with transaction.atomic():
            message, created = services.create_message(
                tenant=request.auth.tenant, spec=spec, idempotency_key=f"idem:{key}" if key else ""
            )
            answer = MessageDetailSerializer(message).data
        return Response(answer, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


def _check_segment(*, tenant, segment_id) -> None:
    """A 400 for a segment the tenant does not have; a 409 for one whose stored rules cannot
    be used (an older Herald's, or edited in the database): it would reach nobody."""
    try:
        rules = segment_rules(tenant=tenant, segment_id=segment_id)
    except RuleError as exc:
        raise ApiError(
            f"The segment's saved rules cannot be used ({exc}); save new rules for it first.",
            code="unusable_rules",
            status=409,
            field="audience.segment_id",
        ) from None
    if rules is None:
        raise ApiError(
            "No segment with this id in this tenant.", code="invalid_field", field="audience.segment_id"
        )


class MessageDetailView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="get_message",
        summary="A message: status, counts, error breakdown",
        responses={200: MessageDetailSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=["messages"],
    )
    def get(self, request, pk):
        message = get_object_or_404(Message, pk=pk, tenant=request.auth.tenant)
        return Response(MessageDetailSerializer(message).data)


class MessageCancelView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="cancel_message",
        summary="Cancel a scheduled or sending message",
        request=None,
        responses={200: MessageDetailSerializer, **ERROR_RESPONSES(401, 403, 404, 409)},
        tags=["messages"],
    )
    def post(self, request, pk):
        message = get_object_or_404(Message, pk=pk, tenant=request.auth.tenant)
        try:
            message = services.cancel_message(message=message)
        except services.NotCancellable as exc:
            raise ApiError(str(exc), code="not_cancellable", status=409) from None
        return Response(MessageDetailSerializer(message).data)


class MessageWinnerView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="pick_winner",
        summary="Pick the winning variant of an A/B test by hand",
        description="Ends the test at once: the variant goes to the rest of the audience. "
        "409 when the message has no A/B test waiting for a winner.",
        request=WinnerSerializer,
        responses={200: MessageDetailSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 409, 415)},
        tags=["messages"],
    )
    def post(self, request, pk):
        message = get_object_or_404(Message, pk=pk, tenant=request.auth.tenant)
        serializer = WinnerSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        variant = serializer.validated_data["variant"]
        if variant >= message.variant_count:
            raise ApiError(
                f"The message has {message.variant_count} variants, numbered from 0.",
                code="invalid_field",
                field="variant",
            )
        try:
            variants.decide_winner(message_id=message.pk, variant=variant)
        except variants.NotDecidable as exc:
            raise ApiError(str(exc), code="not_decidable", status=409) from None
        message.refresh_from_db()
        return Response(MessageDetailSerializer(message).data)
