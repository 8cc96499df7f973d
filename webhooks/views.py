"""/api/v1/webhooks: a tenant's endpoints, with the server key."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError
from api.openapi import ERROR_RESPONSES
from messaging.views import ServerEndpoint
from webhooks import services
from webhooks.models import Endpoint
from webhooks.serializers import (
    AttemptSerializer,
    EndpointCreateSerializer,
    EndpointSerializer,
    EndpointUpdateSerializer,
    EndpointWithSecretSerializer,
    endpoint_with_secret,
)

TAGS = ["webhooks"]


def _refused(exc: services.WebhookError) -> ApiError:
    return ApiError(
        str(exc), code=exc.code, field=exc.field, status=409 if exc.code == "too_many_endpoints" else 400
    )


class WebhookListView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="list_webhooks",
        summary="List the tenant's webhook endpoints",
        responses={200: EndpointSerializer(many=True), **ERROR_RESPONSES(401, 403)},
        tags=TAGS,
    )
    def get(self, request):
        endpoints = Endpoint.objects.filter(tenant=request.auth.tenant).order_by("id")
        return Response(EndpointSerializer(endpoints, many=True).data)

    @extend_schema(
        operation_id="create_webhook",
        summary="Register a webhook endpoint",
        description="Answers with the endpoint and its signing secret (`whsec_…`), which is never shown "
        "again. The URL must be https and must not resolve to a private, loopback or link-local address.",
        request=EndpointCreateSerializer,
        responses={
            201: EndpointWithSecretSerializer,
            **ERROR_RESPONSES(400, 401, 403, 413, 415),
            409: OpenApiResponse(description="The tenant has as many endpoints as it may."),
        },
        tags=TAGS,
    )
    def post(self, request):
        serializer = EndpointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            endpoint, secret = services.create_endpoint(
                tenant=request.auth.tenant, **serializer.validated_data
            )
        except services.WebhookError as exc:
            raise _refused(exc) from None
        return Response(endpoint_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class WebhookDetailView(ServerEndpoint, APIView):
    def endpoint(self, request, pk) -> Endpoint:
        return get_object_or_404(Endpoint, pk=pk, tenant=request.auth.tenant)

    @extend_schema(
        operation_id="get_webhook",
        summary="A webhook endpoint and its state",
        responses={200: EndpointSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=TAGS,
    )
    def get(self, request, pk):
        return Response(EndpointSerializer(self.endpoint(request, pk)).data)

    @extend_schema(
        operation_id="update_webhook",
        summary="Change a webhook endpoint, or enable it again",
        request=EndpointUpdateSerializer,
        responses={200: EndpointSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 413, 415)},
        tags=TAGS,
    )
    def patch(self, request, pk):
        serializer = EndpointUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            endpoint = get_object_or_404(
                Endpoint.objects.select_for_update(), pk=pk, tenant=request.auth.tenant
            )
            try:
                endpoint = services.update_endpoint(endpoint=endpoint, **serializer.validated_data)
            except services.WebhookError as exc:
                raise _refused(exc) from None
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="delete_webhook",
        summary="Delete a webhook endpoint and its undelivered events",
        responses={204: None, **ERROR_RESPONSES(401, 403, 404)},
        tags=TAGS,
    )
    def delete(self, request, pk):
        services.delete_endpoint(endpoint=self.endpoint(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="rotate_webhook_secret",
        summary="Give a webhook endpoint a new signing secret",
        description="Answers with the new secret, shown only now. For the next 24 hours "
        "(WEBHOOKS_SECRET_GRACE_HOURS) every POST carries two signatures, with the new secret and "
        "the old one, so receivers can switch without missing a request.",
        request=None,
        responses={200: EndpointWithSecretSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=TAGS,
    )
    def post(self, request, pk):
        endpoint = get_object_or_404(Endpoint, pk=pk, tenant=request.auth.tenant)
        secret = services.rotate_secret(endpoint=endpoint)
        return Response(endpoint_with_secret(endpoint, secret))


class WebhookAttemptsView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="list_webhook_attempts",
        summary="The last 100 POSTs to an endpoint",
        description="Status code, latency and error class of each; never the response body.",
        responses={200: AttemptSerializer(many=True), **ERROR_RESPONSES(401, 403, 404)},
        tags=TAGS,
    )
    def get(self, request, pk):
        endpoint = get_object_or_404(Endpoint, pk=pk, tenant=request.auth.tenant)
        attempts = endpoint.attempts.select_related("batch").order_by("-attempted_at", "-id")[:100]
        return Response(AttemptSerializer(attempts, many=True).data)
