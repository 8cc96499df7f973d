from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from api import throttling
from api.errors import ApiError
from api.openapi import ERROR_RESPONSES
from devices import ingest, services, validation
from devices.serializers import (
    EventSerializer,
    FingerprintSerializer,
    RefreshTokenSerializer,
    SuccessSerializer,
)
from tenants.auth import AppEndpoint, PlainWork


class EventsView(AppEndpoint):
    @staticmethod
    def plain_prepare(*, key, data: dict) -> PlainWork | None:
        """The plain path's work for a plainly valid body: write the event; in queue mode
        (EVENTS_INGEST=queue), append it to the stream in the rate limits' round trip."""
        fields = validation.event_input(data)
        if fields is None:  # the DRF view's serializer judges the body and words the error
            return None
        tenant, event = key.tenant, services.EventInput(**fields)
        if not ingest.queue_enabled():
            return PlainWork(
                answer=lambda _: {
                    "fingerprint": services.record_event(tenant=tenant, event=event).fingerprint
                }
            )
        queued = ingest.prepare(tenant=tenant, event=event)
        return PlainWork(
            then=queued.append,
            answer=lambda entry_id: {
                "fingerprint": ingest.accepted(queued, entry_id, tenant=tenant, event=event)
            },
        )

    @extend_schema(
        operation_id="record_event",
        summary="Record an event; create or update the user and the device",
        description="One call records the behaviour, upserts the user profile and registers "
        "or updates the device for push. A fresh install calls only this. Sending the same "
        "event again stores it once and answers the same fingerprint.",
        request=EventSerializer,
        responses={200: FingerprintSerializer, **ERROR_RESPONSES(400, 401, 413, 415)},
        tags=["app"],
    )
    def post(self, request):
        data = validation.event_input(request.data)
        if data is None:  # not a plainly valid body: the serializer judges it and words the error
            serializer = EventSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            data.pop("tenant_id"), data.pop("api_key")
        event = services.EventInput(**data)
        if ingest.queue_enabled():  # queued (or, without Redis, written directly)
            return Response({"fingerprint": ingest.accept_event(tenant=request.auth.tenant, event=event)})
        stored = services.record_event(tenant=request.auth.tenant, event=event)
        return Response({"fingerprint": stored.fingerprint})


class RefreshTokenView(AppEndpoint):
    @staticmethod
    def plain_prepare(*, key, data: dict) -> PlainWork | None:
        """The plain path's work for a plainly valid body: the swap; in queue mode, first the
        pending markers of its tokens, read in the rate limits' round trip (devices/ingest.py,
        "Ordering with POST /devices/refresh-token")."""
        fields = validation.refresh_input(data)
        if fields is None:  # the DRF view's serializer judges the body and words the error
            return None
        tenant, old_token, new_token = key.tenant, fields["old_token"], fields["new_token"]

        def answer(markers: list[str | None] | None) -> dict | None:
            try:
                services.refresh_token(
                    tenant=tenant,
                    old_token=old_token,
                    new_token=new_token,
                    app_user_id=fields.get("app_user_id", ""),
                    platform=fields.get("platform", ""),
                    # The markers read with the limits, if they were (else the service reads them).
                    queued_entries=None
                    if markers is None
                    else [entry_id for entry_id in markers if entry_id],
                )
            except services.DeviceError:
                # Nothing changed: the DRF view runs the refresh again and words the 400, 404 or 409.
                return None
            return {"success": True}

        if not ingest.queue_enabled():
            return PlainWork(answer=answer)
        markers = ingest.marker_fields(tenant=tenant, tokens=[old_token, new_token])
        return PlainWork(then=throttling.HashRead(ingest.PENDING, tuple(markers)), answer=answer)

    @extend_schema(
        operation_id="refresh_token",
        summary="Swap a rotated FCM token in place",
        description="Updates the device that holds old_token to hold new_token: same row, "
        "no duplicate device, the old token kept in the device's history and no longer "
        "targeted. When another row already holds new_token for the same user (or for an "
        "anonymous one), the two are merged. Retrying a swap that already happened "
        "answers 200 again.",
        request=RefreshTokenSerializer,
        responses={
            200: SuccessSerializer,
            **ERROR_RESPONSES(400, 401, 413, 415),
            404: OpenApiResponse(description="No device with old_token."),
            409: OpenApiResponse(description="new_token is registered to a different user."),
        },
        tags=["app"],
    )
    def post(self, request):
        data = validation.refresh_input(request.data)
        if data is None:  # not a plainly valid body: the serializer judges it and words the error
            serializer = RefreshTokenSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        try:
            services.refresh_token(
                tenant=request.auth.tenant,
                old_token=data["old_token"],
                new_token=data["new_token"],
                app_user_id=data.get("app_user_id", ""),
                platform=data.get("platform", ""),
            )
        except services.IdenticalTokens:
            raise ApiError("old_token and new_token must be different.", code="identical_tokens") from None
        except services.DeviceNotFound:
            raise ApiError(
                "Device not found for the given old token.", code="device_not_found", status=404
            ) from None
        except services.TokenOwnedByAnotherUser:
            raise ApiError(
                "New token is already registered to a different user.",
                code="token_owned_by_another_user",
                status=409,
            ) from None
        return Response({"success": True})
