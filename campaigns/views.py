"""/api/v1/campaigns: server-key CRUD, lifecycle transitions and stats (README, Campaigns)."""

from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError, body_object
from api.openapi import ERROR_RESPONSES
from api.pagination import StrictPages
from audiences.models import Segment
from campaigns import health, services
from campaigns.models import AudienceKind, Campaign, Kind, Status
from campaigns.serializers import (
    CampaignSerializer,
    CampaignStatsSerializer,
    CampaignWriteSerializer,
    merged_input,
    validated,
)
from tenants.auth import IsServerKey, ServerKeyAuthentication


class ServerEndpoint:
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServerKey]


def _checked(request, data: dict) -> dict:
    """The body checked as a whole campaign; the model fields it makes."""
    tenant = request.auth.tenant
    serializer = validated(
        CampaignWriteSerializer(data=data, context={"default_language": tenant.default_language})
    )
    fields = serializer.model_fields(language=tenant.default_language)
    if fields["audience"] == AudienceKind.SEGMENT:
        # As the messages API answers a segment_id of another tenant: no such segment here.
        segment = Segment.objects.filter(tenant=tenant, pk=fields.pop("segment_id")).first()
        if segment is None:
            raise ApiError(
                "audience.segment_id: No segment with this id in this tenant.",
                code="invalid_field",
                field="audience.segment_id",
            )
        fields["segment"] = segment
    else:
        fields.pop("segment_id")
        fields["segment"] = None
    return fields


def _duplicate_name(name: str) -> ApiError:
    return ApiError(
        f"A campaign named {name!r} exists already.", code="duplicate_name", status=409, field="name"
    )


def _saved(call, *, name: str = ""):
    """Run a service; its refusals become 409s. A name taken meanwhile (the unique
    constraint, after the view's own check) is a 409 too, with nothing stored."""
    try:
        with transaction.atomic():
            return call()
    except IntegrityError:
        raise _duplicate_name(name) from None
    except services.CampaignError as exc:
        raise ApiError(str(exc), code="illegal_transition", status=409) from None


def _check_name_free(tenant, name: str, *, other_than: int | None = None) -> None:
    taken = Campaign.objects.filter(tenant=tenant, name=name).exclude(pk=other_than)
    if taken.exists():
        raise _duplicate_name(name)


def _campaign(request, pk) -> Campaign:
    return get_object_or_404(Campaign, pk=pk, tenant=request.auth.tenant)


WRITE_DESCRIPTION = (
    "Every field is checked; a fault is a 400 whose `field` is its path "
    "(content.variants[1].localizations.tr.title, trigger_params[0].op, audience.rules.include[0][0].event). "
    "Triggered campaigns take trigger_event, trigger_params, delay_seconds and cancel_event; scheduled ones "
    "schedule_kind, send_time, send_date (once, annually), weekdays (weekly), month_days (monthly), "
    "zone_mode and zone."
)


class CampaignListView(ServerEndpoint, generics.ListAPIView):
    serializer_class = CampaignSerializer
    pagination_class = StrictPages

    def get_queryset(self):
        campaigns = Campaign.objects.for_tenant(self.request.auth.tenant).select_related("segment")
        for name, choices in (("status", Status), ("kind", Kind)):
            value = self.request.query_params.get(name)
            if value is None:
                continue
            if value not in choices.values:
                raise ApiError(
                    f"{name} must be one of {', '.join(choices.values)}.", code="invalid_field", field=name
                )
            campaigns = campaigns.filter(**{name: value})
        return campaigns

    @extend_schema(
        operation_id="list_campaigns",
        summary="List campaigns, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=Status.values, description="Only campaigns in this state."),
            OpenApiParameter("kind", str, enum=Kind.values, description="Only triggered or scheduled ones."),
        ],
        responses={200: CampaignSerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
        tags=["campaigns"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="create_campaign",
        summary="Create a campaign (a draft)",
        description=WRITE_DESCRIPTION,
        request=CampaignWriteSerializer,
        responses={201: CampaignSerializer, **ERROR_RESPONSES(400, 401, 403, 409, 413, 415)},
        tags=["campaigns"],
    )
    def post(self, request):
        tenant = request.auth.tenant
        fields = _checked(request, body_object(request))
        _check_name_free(tenant, fields["name"])
        with transaction.atomic():
            campaign = _saved(
                lambda: services.create_campaign(tenant=tenant, fields=fields),
                name=fields["name"],
            )
            answer = CampaignSerializer(campaign).data
        return Response(answer, status=status.HTTP_201_CREATED)


class CampaignDetailView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="get_campaign",
        summary="A campaign",
        responses={200: CampaignSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=["campaigns"],
    )
    def get(self, request, pk):
        return Response(CampaignSerializer(_campaign(request, pk)).data)

    @extend_schema(
        operation_id="update_campaign",
        summary="Change a campaign",
        description="Top-level fields replace the stored ones, and the result is checked as a whole. "
        "An active or paused campaign sends with the new settings from now on (a new version); its kind "
        "is fixed once it left draft. An archived campaign cannot change (409).\n\n" + WRITE_DESCRIPTION,
        request=CampaignWriteSerializer(partial=True),
        responses={200: CampaignSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 415)},
        tags=["campaigns"],
    )
    def patch(self, request, pk):
        campaign = _campaign(request, pk)
        patch = body_object(request)
        if campaign.status == Status.ARCHIVED:
            raise ApiError("An archived campaign cannot be changed.", code="archived", status=409)
        if "kind" in patch and patch["kind"] != campaign.kind and campaign.status != Status.DRAFT:
            raise ApiError(
                "Only a draft can change its kind; create a new campaign instead.",
                code="kind_locked",
                status=409,
                field="kind",
            )
        fields = _checked(request, merged_input(campaign, patch))
        _check_name_free(campaign.tenant, fields["name"], other_than=campaign.pk)
        with transaction.atomic():
            campaign = _saved(
                lambda: services.update_campaign(campaign=campaign, fields=fields),
                name=fields["name"],
            )
            answer = CampaignSerializer(campaign).data
        return Response(answer)

    @extend_schema(
        operation_id="delete_campaign",
        summary="Delete a draft campaign",
        description="Only drafts are deleted. A campaign that was ever active keeps its history: "
        "archive it instead (409 here).",
        responses={204: None, **ERROR_RESPONSES(401, 403, 404, 409)},
        tags=["campaigns"],
    )
    def delete(self, request, pk):
        campaign = _campaign(request, pk)
        deleted, _ = Campaign.objects.filter(pk=campaign.pk, status=Status.DRAFT).delete()
        if not deleted:
            raise ApiError(
                "Only a draft can be deleted; archive the campaign instead (POST …/archive).",
                code="not_a_draft",
                status=409,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _transition(name: str, summary: str, description: str):
    move = getattr(services, name)

    class TransitionView(ServerEndpoint, APIView):
        @extend_schema(
            operation_id=f"{name}_campaign",
            summary=summary,
            description=description + " An illegal transition is a 409.",
            request=None,
            responses={200: CampaignSerializer, **ERROR_RESPONSES(401, 403, 404, 409)},
            tags=["campaigns"],
        )
        def post(self, request, pk):
            campaign = _saved(lambda: move(_campaign(request, pk)))
            return Response(CampaignSerializer(campaign).data)

    TransitionView.__name__ = f"Campaign{name.title()}View"
    return TransitionView


CampaignActivateView = _transition("activate", "Activate a draft campaign", "Draft → Active.")
CampaignPauseView = _transition(
    "pause", "Pause an active campaign", "Active → Paused: new sends stop at once; every setting is kept."
)
CampaignResumeView = _transition(
    "resume",
    "Resume a paused campaign",
    "Paused → Active. What fell due while paused is not sent (no burst): sends continue from now.",
)
CampaignArchiveView = _transition(
    "archive", "Archive a campaign", "Draft, Active or Paused → Archived, for good: nothing more is sent."
)


class CampaignStatsView(ServerEndpoint, APIView):
    @extend_schema(
        operation_id="campaign_stats",
        summary="What a campaign sent, and its health",
        responses={200: CampaignStatsSerializer, **ERROR_RESPONSES(401, 403, 404)},
        tags=["campaigns"],
    )
    def get(self, request, pk):
        campaign = _campaign(request, pk)
        return Response(stats_of(campaign))


def stats_of(campaign: Campaign) -> dict:
    """services.campaign_stats in the API's shape, with the health score beside it."""
    stats = services.campaign_stats(campaign)
    return {
        "users_sent": int(stats.get("users_sent") or 0),
        "users_deferred": int(stats.get("users_deferred") or 0),
        "users_skipped": int(stats.get("users_skipped") or 0),
        "skipped": {str(k): int(v) for k, v in (stats.get("skipped") or {}).items()},
        "messages": int(stats.get("messages") or 0),
        "sent": int(stats.get("sent") or 0),
        "failed": int(stats.get("failed") or 0),
        "opened": int(stats.get("opened") or 0),
        "open_rate": stats.get("open_rate"),
        "pending_triggers": int(stats.get("pending_triggers") or 0),
        "per_variant": [
            {k: row.get(k) or 0 for k in ("variant", "sent", "failed", "opened")}
            for row in stats.get("per_variant") or []
        ],
        "per_run": [
            {
                **run,
                "due_at": run["due_at"].isoformat()
                if hasattr(run.get("due_at"), "isoformat")
                else run.get("due_at"),
            }
            for run in stats.get("per_run") or []
        ],
        "health": health.score_campaign(campaign, stats=stats).as_dict(),
    }
