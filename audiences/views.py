from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError, body_object
from api.openapi import ERROR_RESPONSES
from api.pagination import StrictPages
from audiences import rules as rule_doc
from audiences import selectors, services
from audiences.models import Segment
from audiences.serializers import (
    AdHocCountSerializer,
    SegmentSerializer,
    SegmentWriteSerializer,
    SizeSerializer,
)
from tenants.auth import IsServerKey, ServerKeyAuthentication


class ServerEndpoint:
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServerKey]


def _saved(call):
    try:
        return call()
    except services.DuplicateName as exc:
        raise ApiError(str(exc), code="duplicate_name", status=409, field="name") from None


class SegmentListView(ServerEndpoint, generics.ListAPIView):
    serializer_class = SegmentSerializer
    pagination_class = StrictPages

    def get_queryset(self):
        return Segment.objects.for_tenant(self.request.auth.tenant).order_by("name", "pk")

    @extend_schema(
        operation_id="list_segments",
        summary="List segments, by name",
        responses={200: SegmentSerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
        tags=["segments"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="create_segment",
        summary="Save a segment",
        description="Rules are checked first: a fault is a 400 whose `field` is its path, "
        "e.g. rules.include[0][1].params[0].op.",
        request=SegmentWriteSerializer,
        responses={201: SegmentSerializer, **ERROR_RESPONSES(400, 401, 403, 409, 413, 415)},
        tags=["segments"],
    )
    def post(self, request):
        serializer = SegmentWriteSerializer(data=body_object(request))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        segment = _saved(
            lambda: services.create_segment(
                tenant=request.auth.tenant,
                name=data["name"],
                description=data.get("description", ""),
                rules=data["rules"],
            )
        )
        return Response(SegmentSerializer(segment).data, status=status.HTTP_201_CREATED)


class SegmentDetailView(ServerEndpoint, APIView):
    def segment(self, request, pk) -> Segment:
        return get_object_or_404(Segment, pk=pk, tenant=request.auth.tenant)

    @extend_schema(
        operation_id="get_segment",
        summary="A segment",
        responses={200: SegmentSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=["segments"],
    )
    def get(self, request, pk):
        return Response(SegmentSerializer(self.segment(request, pk)).data)

    @extend_schema(
        operation_id="update_segment",
        summary="Change a segment's name, description or rules",
        description="Messages that target the segment and have not been sent yet use the new "
        "rules: membership is evaluated when a message is sent.",
        request=SegmentWriteSerializer(partial=True),
        responses={200: SegmentSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 415)},
        tags=["segments"],
    )
    def patch(self, request, pk):
        segment = self.segment(request, pk)
        serializer = SegmentWriteSerializer(data=body_object(request), partial=True)
        serializer.is_valid(raise_exception=True)
        segment = _saved(lambda: services.update_segment(segment=segment, **serializer.validated_data))
        return Response(SegmentSerializer(segment).data)

    @extend_schema(
        operation_id="delete_segment",
        summary="Delete a segment",
        description="Refused (409) while a draft, scheduled or unsent message targets it.",
        responses={204: None, **ERROR_RESPONSES(401, 403, 404, 409)},
        tags=["segments"],
    )
    def delete(self, request, pk):
        segment = self.segment(request, pk)
        try:
            services.delete_segment(segment=segment)
        except services.SegmentInUse as exc:
            raise ApiError(str(exc), code="segment_in_use", status=409) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentCountView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="count_segment",
        summary="A segment's size now",
        description="409 `unusable_rules`: the segment's stored rules (an older Herald's, or "
        "edited in the database) cannot be used; `field` names the fault. Saving new rules fixes it.",
        responses={200: SizeSerializer, **ERROR_RESPONSES(401, 403, 404, 409)},
        tags=["segments"],
    )
    def get(self, request, pk):
        segment = get_object_or_404(Segment, pk=pk, tenant=request.auth.tenant)
        try:
            rules = rule_doc.stored(segment.rules)
        except rule_doc.RuleError as exc:
            field = f"rules.{exc.path}" if exc.path else "rules"
            raise ApiError(
                f"The segment's saved rules cannot be used: {field}: {exc.message}",
                code="unusable_rules",
                status=409,
                field=field,
            ) from None
        return Response(selectors.count(request.auth.tenant, rules))


class AdHocCountView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="count_rules",
        summary="The size of a rule document, without saving it",
        request=AdHocCountSerializer,
        responses={200: SizeSerializer, **ERROR_RESPONSES(400, 401, 403, 413, 415)},
        tags=["segments"],
    )
    def post(self, request):
        serializer = AdHocCountSerializer(data=body_object(request))
        serializer.is_valid(raise_exception=True)
        return Response(selectors.count(request.auth.tenant, serializer.validated_data["rules"]))
