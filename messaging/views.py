from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError
from api.openapi import ERROR_RESPONSES, ErrorSerializer
from api.throttling import DeveloperPushThrottle, PerIpThrottle, PerKeyThrottle
from messaging import services
from messaging.models import Message
from messaging.serializers import (
    DeveloperPushResponseSerializer,
    DeveloperPushSerializer,
    MessageCreateSerializer,
    MessageDetailSerializer,
    MessageSerializer,
    PushOpenedSerializer,
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
    throttle_classes = [DeveloperPushThrottle, PerIpThrottle, PerKeyThrottle]

    @extend_schema(
        operation_id="developer_push",
        summary="Send a push to one user from a back end",
        description="Every device of the user with push permission gets it. A dedupe_key "
        "repeated for the same app_user_id within 10 minutes does not send again: the answer is "
        "201 with the first push's push_count and `deduplicated: true`.",
        request=DeveloperPushSerializer,
        responses={201: DeveloperPushResponseSerializer, **ERROR_RESPONSES(400, 401, 413, 415, 429),
                   404: OpenApiResponse(description="No device with push permission for that user.")},
        tags=["server"],
    )
    def post(self, request):
        serializer = DeveloperPushSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tenant = request.auth.tenant
        spec = services.MessageInput(
            title=data["title"], body=data["body"], data=data.get("extra_data", {}),
            priority=data["priority"], schedule_at=data.get("schedule_at"),
        )
        try:
            push = services.send_developer_push(
                tenant=tenant, app_user_id=data["app_user_id"], spec=spec,
                dedupe_key=data.get("dedupe_key", ""))
        except services.NoTargetableDevice:
            raise ApiError("No device with push permission for that user.", code="no_targetable_device",
                           status=404) from None
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
        responses={200: OpenApiResponse(description='{"success": true}'),
                   **ERROR_RESPONSES(400, 401, 413, 415),
                   404: OpenApiResponse(description="No delivery with that tracking_token in this tenant.")},
        tags=["app"],
    )
    def post(self, request):
        serializer = PushOpenedSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not services.record_open(tenant=request.auth.tenant,
                                    tracking_token=serializer.validated_data["tracking_token"]):
            raise ApiError("No push with that tracking_token.", code="delivery_not_found", status=404)
        return Response({"success": True})


class ServerEndpoint:
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServerKey]


class MessagePages(PageNumberPagination):
    """Pages of 50 (page_size up to 200). A malformed page or page_size is a 400, not ignored."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    page_query_description = "A page number, from 1."
    page_size_query_description = "Messages per page, 1 to 200 (default 50); more is capped at 200."

    def paginate_queryset(self, queryset, request, view=None):
        for name in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(name)
            if value is not None and not (value.isascii() and value.isdigit() and int(value) >= 1):
                raise ApiError(f"{name} must be a whole number from 1.", code="invalid_field", field=name)
        return super().paginate_queryset(queryset, request, view)


class MessageListView(ServerEndpoint, generics.ListAPIView):
    serializer_class = MessageSerializer
    pagination_class = MessagePages

    def get_queryset(self):
        return Message.objects.for_tenant(self.request.auth.tenant)

    @extend_schema(operation_id="list_messages", summary="List messages, newest first",
                   responses={200: MessageSerializer(many=True), **ERROR_RESPONSES(400, 401, 403),
                              404: OpenApiResponse(ErrorSerializer,
                                                   description="The page is past the last one.")},
                   tags=["messages"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="create_message", summary="Create and send (or schedule) a message",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="The same key within 24 hours returns the first message.")],
        request=MessageCreateSerializer,
        responses={202: MessageDetailSerializer, 200: MessageDetailSerializer,
                   **ERROR_RESPONSES(400, 401, 403, 413, 415)},
        tags=["messages"],
    )
    def post(self, request):
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > 200:
            raise ApiError("Idempotency-Key is longer than 200 characters.", code="invalid_header")
        # One transaction for the insert and the answer: if the answer cannot be made, no row
        # stays behind an error.
        with transaction.atomic():
            message, created = services.create_message(
                tenant=request.auth.tenant, spec=serializer.to_input(),
                idempotency_key=f"idem:{key}" if key else "")
            answer = MessageDetailSerializer(message).data
        return Response(answer, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class MessageDetailView(ServerEndpoint, APIView):
    @extend_schema(operation_id="get_message", summary="A message: status, counts, error breakdown",
                   responses={200: MessageDetailSerializer, **ERROR_RESPONSES(401, 403, 404)},
                   tags=["messages"])
    def get(self, request, pk):
        message = get_object_or_404(Message, pk=pk, tenant=request.auth.tenant)
        return Response(MessageDetailSerializer(message).data)


class MessageCancelView(ServerEndpoint, APIView):
    @extend_schema(operation_id="cancel_message", summary="Cancel a scheduled or sending message",
                   request=None,
                   responses={200: MessageDetailSerializer, **ERROR_RESPONSES(401, 403, 404, 409)},
                   tags=["messages"])
    def post(self, request, pk):
        message = get_object_or_404(Message, pk=pk, tenant=request.auth.tenant)
        try:
            message = services.cancel_message(message=message)
        except services.NotCancellable as exc:
            raise ApiError(str(exc), code="not_cancellable", status=409) from None
        return Response(MessageDetailSerializer(message).data)
