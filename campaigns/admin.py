"""Campaigns in the admin: the list, the editor and the campaign page.

Viewers see the list and the pages; editors create, edit, activate, pause, resume and archive
(tenants.scoping). The editor reuses the composer's variant tabs and language bar
(herald/content.js) and the segment rule builder (audiences/rule_builder.js); its own script
(campaigns/editor.js) shows the trigger or the schedule fields and asks `summary/` for the
plain-language summary and the audience's live size.
"""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from audiences import rules as rule_doc
from audiences import selectors as audience_selectors
from campaigns import health, schedule, services
from campaigns.forms import CampaignForm
from campaigns.models import AudienceKind, Campaign, CampaignRecipient, ContentMode, Kind, SkipReason, Status
from campaigns.serializers import content_variants
from tenants.scoping import Role, TenantScopedAdminMixin, roles_of, tenants_for

STATUS_CHIPS = {
    Status.DRAFT: "hd-chip",
    Status.ACTIVE: "hd-chip hd-chip-ok",
    Status.PAUSED: "hd-chip hd-chip-warn",
    Status.ARCHIVED: "hd-chip",
}
HEALTH_CHIPS = {
    "Excellent": "hd-chip hd-chip-ok",
    "Good": "hd-chip hd-chip-info",
    "Needs work": "hd-chip hd-chip-warn",
    "Critical": "hd-chip hd-chip-bad",
}
VARIANT_LABELS = "ABCDE"


def status_chip(campaign: Campaign):
    return format_html(
        '<span class="{} hd-campaign-status" data-status="{}">{}</span>',
        STATUS_CHIPS.get(campaign.status, "hd-chip"),
        campaign.status,
        campaign.get_status_display(),
    )


def health_chip(result: health.Health):
    if result.score is None:
        return format_html(
            '<span class="hd-chip hd-health" title="{}">{}</span>', result.summary, result.band
        )
    return format_html(
        '<span class="{} hd-health" title="{}">{} · {}</span>',
        HEALTH_CHIPS.get(result.band, "hd-chip"),
        result.summary,
        result.score,
        result.band,
    )


def describe(campaign: Campaign) -> str:
    """camp-sched's plain-language summary ("Every Monday at 09:00 in each user's time zone")."""
    try:
        return schedule.describe(campaign)
    except Exception:  # a half-made sketch from the editor must not break the page  # noqa: BLE001
        return ""


def audience_text(campaign: Campaign) -> str:
    if campaign.audience == AudienceKind.SEGMENT and campaign.segment_id:
        return f"Segment “{campaign.segment.name}”"
    if campaign.audience == AudienceKind.RULES:
        return "Users matching its rules"
    return "Everyone"


def audience_size(tenant, campaign: Campaign) -> dict | None:
    if campaign.audience == AudienceKind.SEGMENT:
        if campaign.segment is None or campaign.segment.tenant_id != tenant.pk:
            return None
        rules = campaign.segment.rules
    elif campaign.audience == AudienceKind.RULES:
        rules = campaign.rules or {}
    else:
        rules = {"version": 1, "include": [], "exclude": []}
    try:
        return audience_selectors.count(tenant, rule_doc.stored(rules))
    except Exception:  # rules the editor has not finished  # noqa: BLE001
        return None


@admin.register(Campaign)
class CampaignAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "name_column",
        "tenant",
        "status_column",
        "kind_column",
        "next_run_column",
        "sends_7d",
        "health_column",
    ]
    list_display_links = ["name_column"]
    list_filter = ["status", "kind", "tenant"]
    search_fields = ["name", "description", "trigger_event"]
    list_select_related = ["tenant"]
    list_per_page = 50
    view_role = Role.VIEWER
    add_role = change_role = Role.EDITOR
    delete_role = None  # drafts are deleted through the API; campaigns with history are archived

    # No bulk delete: a campaign with history is archived, never deleted from a list.
    actions = None

    class Media:
        css = {"all": ["campaigns/campaigns.css"]}

    # --- The list ---------------------------------------------------------------------------

    def get_queryset(self, request):
        week = timezone.now() - timedelta(days=7)
        return (
            super()
            .get_queryset(request)
            .annotate(
                sends_week=Count(
                    "recipients",
                    filter=Q(
                        recipients__state=CampaignRecipient.State.SENT, recipients__created_at__gte=week
                    ),
                )
            )
        )

    @admin.display(description="campaign", ordering="name")
    def name_column(self, obj):
        return format_html(
            '<span class="hd-title">{}</span><span class="hd-sub">{}</span>', obj.name, describe(obj)
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, obj):
        return status_chip(obj)

    @admin.display(description="kind", ordering="kind")
    def kind_column(self, obj):
        return "Triggered" if obj.kind == Kind.TRIGGERED else "Scheduled"

    @admin.display(description="next run", ordering="next_run_at")
    def next_run_column(self, obj):
        if obj.kind == Kind.TRIGGERED:
            return format_html(
                '<span class="hd-muted">{}</span>', "on each event" if obj.status == Status.ACTIVE else "—"
            )
        if obj.next_run_at is None or obj.status != Status.ACTIVE:
            return mark_safe('<span class="hd-muted">—</span>')
        return format_html(
            '<span class="hd-num">{}</span>', timezone.localtime(obj.next_run_at).strftime("%d %b %Y %H:%M")
        )

    @admin.display(description="sends, 7 days", ordering="sends_week")
    def sends_7d(self, obj):
        return format_html('<span class="hd-num">{}</span>', f"{obj.sends_week:,}")

    @admin.display(description="health")
    def health_column(self, obj):
        return health_chip(health.score_campaign(obj))

    def get_list_display(self, request):
        # One page of the list reads each tenant's median open rate once, not once a row.
        medians: dict = {}

        @admin.display(description="health")
        def health_column(obj):
            return health_chip(health.score_campaign(obj, medians=medians))

        return [health_column if c == "health_column" else c for c in super().get_list_display(request)]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_create": self.has_role(request, Role.EDITOR)}
        return super().changelist_view(request, extra_context)

    # --- URLs -------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("new/", view(self.editor_view), name="campaigns_campaign_new"),
            path("summary/", view(self.summary_view), name="campaigns_campaign_summary"),
            path("<path:object_id>/edit/", view(self.editor_view), name="campaigns_campaign_edit"),
            *[
                path(
                    f"<path:object_id>/{verb}/",
                    view(self.transition_view),
                    {"verb": verb},
                    name=f"campaigns_campaign_{verb}",
                )
                for verb in ("activate", "pause", "resume", "archive")
            ],
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_new"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return self.campaign_view(request, object_id)

    def _campaign(self, request, object_id, role=Role.VIEWER) -> Campaign:
        campaign = self.get_object(request, object_id)  # 404 outside the user's tenants
        if not self.has_role(request, role, campaign):
            raise PermissionDenied
        return campaign

    def _page(self, request, template, title, **context):
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, **context},
        )

    # --- The campaign page ------------------------------------------------------------------

    def campaign_view(self, request, object_id):
        campaign = self._campaign(request, object_id)
        stats = services.campaign_stats(campaign)
        result = health.score_campaign(campaign, stats=stats)
        variants = content_variants(campaign)
        # Every variant of the content, sent or not yet (rotation reaches B on a user's second
        # send), then any a past version had beyond them.
        rows = {row.get("variant"): row for row in stats.get("per_variant") or []}
        indexes = list(range(len(variants))) + sorted(
            i for i in rows if isinstance(i, int) and i >= len(variants)
        )
        per_variant = []
        for index in indexes:
            row = rows.get(index, {})
            sent, opened = row.get("sent") or 0, row.get("opened") or 0
            per_variant.append(
                {
                    "label": VARIANT_LABELS[index] if index < len(VARIANT_LABELS) else str(index),
                    "title": variants[index].content.title
                    if index < len(variants)
                    else "(an earlier version's)",
                    "languages": len(variants[index].localizations) if index < len(variants) else 0,
                    "sent": sent,
                    "failed": row.get("failed") or 0,
                    "opened": opened,
                    "open_rate": f"{100 * opened / sent:.1f} %" if sent else "—",
                }
            )
        reasons = dict(SkipReason.choices)
        skipped = sorted(
            ((reasons.get(reason, reason), n) for reason, n in (stats.get("skipped") or {}).items()),
            key=lambda pair: -pair[1],
        )
        can_edit = self.has_role(request, Role.EDITOR, campaign)
        delivered = stats.get("sent") or 0
        return self._page(
            request,
            "admin/campaigns/campaign/detail.html",
            campaign.name,
            campaign=campaign,
            original=campaign,
            status_chip=status_chip(campaign),
            summary=describe(campaign),
            audience=audience_text(campaign),
            stats=stats,
            open_rate=f"{100 * (stats.get('opened') or 0) / delivered:.1f} %" if delivered else "",
            health=result,
            health_chip=health_chip(result),
            per_variant=per_variant,
            skipped=skipped,
            runs=list(reversed(stats.get("per_run") or []))[:50],
            sends=campaign.sends.select_related("message")[:20],
            versions=campaign.versions.all()[:10],
            can_edit=can_edit and campaign.status != Status.ARCHIVED,
            can_activate=can_edit and campaign.status == Status.DRAFT,
            can_pause=can_edit and campaign.status == Status.ACTIVE,
            can_resume=can_edit and campaign.status == Status.PAUSED,
            can_archive=can_edit and campaign.status != Status.ARCHIVED,
            multi_tenant=len(roles_of(request.user)) > 1,
        )

    def transition_view(self, request, object_id, verb):
        """POST: activate, pause, resume or archive; back to the campaign page."""
        campaign = self._campaign(request, object_id, Role.EDITOR)
        back = HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        if request.method != "POST":
            return back
        try:
            getattr(services, verb)(campaign)
        except services.CampaignError as exc:
            messages.error(request, str(exc))
        else:
            done = {
                "activate": "is active",
                "pause": "is paused",
                "resume": "is active again",
                "archive": "is archived",
            }
            messages.success(request, f"“{campaign.name}” {done[verb]}.")
        return back

    # --- The editor -------------------------------------------------------------------------

    def editor_view(self, request, object_id=None):
        if not self.has_role(request, Role.EDITOR):
            raise PermissionDenied
        campaign = self._campaign(request, object_id, Role.EDITOR) if object_id else None
        if campaign is not None and campaign.status == Status.ARCHIVED:
            messages.error(request, "An archived campaign cannot be changed.")
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        if request.method != "POST":
            initial = CampaignForm.initial_from(campaign) if campaign else {}
            if not campaign and (tenant := request.GET.get("tenant", "")).isdigit():
                if tenants_for(request.user, Role.EDITOR).filter(pk=int(tenant)).exists():
                    initial["tenant"] = int(tenant)
            form = CampaignForm(user=request.user, campaign=campaign, initial=initial)
            return self._editor_page(request, form, campaign)
        form = CampaignForm(request.POST, user=request.user, campaign=campaign)
        if not form.is_valid():
            return self._editor_page(request, form, campaign)
        tenant, fields = form.cleaned_data["tenant"], form.model_fields
        taken = Campaign.objects.filter(tenant=tenant, name=fields["name"])
        if campaign is not None:
            taken = taken.exclude(pk=campaign.pk)
        if taken.exists():
            form.add_error("name", "A campaign of this tenant has this name already.")
            return self._editor_page(request, form, campaign)
        if campaign is not None and campaign.kind != fields["kind"] and campaign.status != Status.DRAFT:
            form.add_error("kind", "Only a draft can change its kind; create a new campaign instead.")
            return self._editor_page(request, form, campaign)
        try:
            if campaign is None:
                campaign = services.create_campaign(tenant=tenant, fields=fields, created_by=request.user)
                messages.success(
                    request, f"Saved “{campaign.name}” as a draft. Activate it when it is ready."
                )
            else:
                campaign = services.update_campaign(campaign=campaign, fields=fields, updated_by=request.user)
                messages.success(request, f"Saved “{campaign.name}” (version {campaign.version}).")
        except services.CampaignError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def _editor_page(self, request, form, campaign):
        tenants = form.fields["tenant"].queryset
        from tenants.codes import LANGUAGES

        return self._page(
            request,
            "admin/campaigns/campaign/editor.html",
            f"Edit “{campaign.name}”" if campaign else "New campaign",
            form=form,
            campaign=campaign,
            single_tenant=tenants.count() == 1,
            tenant_languages={str(t.pk): t.default_language for t in tenants},
            language_codes=sorted(LANGUAGES),
            content_modes=ContentMode,
        )

    def summary_view(self, request):
        """POST the editor's fields: {"summary": "Every Monday at 09:00 …",
        "audience": "≈ 12 users · 15 devices …"}."""
        if not self.has_role(request, Role.VIEWER):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"ok": False, "error": "POST only"}, status=405)
        form = CampaignForm(request.POST, user=request.user)
        form.is_valid()
        sketch = form.sketch()
        answer = {"ok": True, "summary": describe(sketch), "audience": ""}
        tenant = (getattr(form, "cleaned_data", {}) or {}).get("tenant")
        audience = request.POST.get("audience", AudienceKind.ALL)
        if tenant is not None and audience in (AudienceKind.ALL, AudienceKind.SEGMENT):
            sketch.audience = audience
            sketch.segment = form.cleaned_data.get("segment")
            size = audience_size(tenant, sketch) if audience == AudienceKind.ALL or sketch.segment else None
            if size is not None:
                users, devices = size["users"], size["devices"]
                answer["audience"] = (
                    f"≈ {users:,} user{'' if users == 1 else 's'} · {devices:,} "
                    f"device{'' if devices == 1 else 's'} that allow pushes, now"
                )
        return JsonResponse(answer)
