"""Segments in the admin: a list whose live sizes come in after it is drawn, and an editor
whose rules are checked as typed.

The list's sizes are audiences/static/audiences/segment_sizes.js's: each row asks the
preview view for its segment's size as it comes into view. The editor's rule builder is
audiences/static/audiences/rule_builder.js (no inline script): it draws the document as AND
groups, OR between them and an "except" block, keeps the rules field's JSON in step, and
asks the views below for the live size, matching users and errors.
"""

import json

from django import forms
from django.contrib import admin
from django.http import Http404, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audiences import rules as rule_doc
from audiences import selectors, services
from audiences.models import Segment
from tenants.models import Tenant
from tenants.scoping import Role, TenantScopedAdminMixin, has_role


class SegmentForm(forms.ModelForm):
    rules = forms.JSONField(
        initial=dict,
        widget=forms.Textarea(
            attrs={"rows": 8, "class": "vLargeTextField rules-json", "spellcheck": "false"}
        ),
        help_text="The rule document (README, Segments). The builder above writes it for you.",
    )

    class Meta:
        model = Segment
        fields = ["tenant", "name", "description", "rules"]

    def clean_rules(self):
        try:
            return rule_doc.parse(self.cleaned_data["rules"])
        except rule_doc.RuleError as exc:
            raise forms.ValidationError(str(exc), code="invalid_rules") from None


@admin.register(Segment)
class SegmentAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "tenant", "size", "updated_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "description"]
    list_select_related = ["tenant"]
    view_role = Role.VIEWER
    add_role = change_role = delete_role = Role.EDITOR

    class Media:
        js = ["audiences/rule_builder.js", "audiences/segment_sizes.js"]
        css = {"all": ["audiences/rule_builder.css"]}

    @admin.display(description="Size now")
    def size(self, segment):
        """Counted after the page is drawn, row by row as rows come into view
        (segment_sizes.js asks `preview_view` for each): a count at a million users takes
        0.3–0.5 s, too long to hold the list for, once per segment."""
        return format_html(
            '<span class="segment-size" data-url="{}?segment={}" aria-live="polite">Counting …</span>',
            reverse(f"{self.admin_site.name}:audiences_segment_preview"),
            segment.pk,
        )

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for segment in objs:
            try:
                services.segment_deleting.send(Segment, segment=segment)
            except services.SegmentInUse as exc:
                protected.append(str(exc))
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        services.delete_segment(segment=obj)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_view), name="audiences_segment_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """POST {tenant, rules}: the size and 20 matching users, or the rule error and its path.
        GET ?segment=<pk>: a saved segment's size now (the list's rows ask, one at a time)."""
        if request.method == "GET":
            return self._saved_size(request)
        if request.method != "POST":
            return JsonResponse({"ok": False, "error": "GET or POST only"}, status=405)
        try:
            body = json.loads(request.body or b"{}")
            tenant = Tenant.objects.get(pk=int(body.get("tenant")))
        except (ValueError, TypeError, Tenant.DoesNotExist):
            raise Http404("No such tenant.") from None
        if not (request.user.is_superuser or has_role(request.user, tenant.pk, Role.VIEWER)):
            raise Http404("No such tenant.")
        try:
            parsed = rule_doc.parse(body.get("rules"))
        except rule_doc.RuleError as exc:
            return JsonResponse({"ok": False, "path": exc.path, "error": exc.message, "text": str(exc)})
        size = selectors.count(tenant, parsed)
        sample = [
            {
                "app_user_id": u.app_user_id,
                "language": u.language,
                "country": u.country,
                "last_seen": u.last_seen_at.isoformat(timespec="minutes"),
            }
            for u in selectors.sample_users(tenant, parsed)
        ]
        return JsonResponse({"ok": True, **size, "sample": sample})

    def _saved_size(self, request):
        """A saved segment's size now, counted as the editor's preview counts it; a segment
        of another tenant, or none, is a 404."""
        try:
            pk = int(request.GET.get("segment", ""))
        except ValueError:
            raise Http404("No such segment.") from None
        segment = self.get_queryset(request).select_related("tenant").filter(pk=pk).first()
        if segment is None or not self.has_view_permission(request, segment):
            raise Http404("No such segment.")
        try:
            rules = rule_doc.stored(segment.rules)
        except rule_doc.RuleError as exc:
            return JsonResponse(unusable_rules(exc), status=400)
        return JsonResponse({"ok": True, **selectors.count(segment.tenant, rules)})


def unusable_rules(fault: rule_doc.RuleError) -> dict:
    """The JSON answer (a 400) for a saved segment whose stored rules cannot be used: the
    list shows it in the segment's row (segment_sizes.js) instead of a size."""
    return {
        "ok": False,
        "path": fault.path,
        "error": fault.message,
        "text": f"The segment's saved rules cannot be used ({fault}); correct them in the segment editor.",
    }
