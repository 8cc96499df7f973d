"""Messages in the admin: the list, the composer, the message page and its live progress.

The composer and the message page are custom admin views on MessageAdmin; what they
do is in `messaging.services` (create, send, cancel) and `messaging.checks`
(validate, test push). Tenant scoping and roles come from `tenants.scoping`. The Firebase
credential admin gets its "Check credentials" action here, where FCM may be reached.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from api.csv_export import csv_response
from audiences.models import Segment
from devices.models import Platform
from messaging import charts, checks, content, services, variants
from messaging.exports import DELIVERY_EXPORT_COLUMNS, delivery_export_rows
from messaging.forms import UNUSABLE_RULES, ComposeForm
from messaging.models import Audience, Delivery, Message
from messaging.selectors import (
    UnusableAudience,
    audience_size,
    audience_users,
    content_stats,
    error_breakdown,
)
from tenants import admin as tenants_admin
from tenants.codes import LANGUAGES
from tenants.models import FirebaseCredential, Membership
from tenants.scoping import Role, TenantScopedAdminMixin, roles_of, tenants_for

AUDIENCE_FIELDS = {
    "tenant",
    "audience",
    "platforms",
    "countries",
    "languages",
    "app_user_ids",
    "tokens",
    "topic",
    "condition",
    "segment",
    "rules",
}
FAILURES_PER_PAGE = 25


def progress(message: Message) -> dict:
    """A message's counts as the message page's progress bar shows them."""
    targeted = message.targeted_count
    done = message.sent_count + message.validated_count + message.failed_count

    def share(n):
        return round(100 * n / targeted, 1) if targeted else 0

    return {
        "status": message.status,
        "status_label": message.get_status_display(),
        "final": message.is_final,
        "targeted": targeted,
        "sent": message.sent_count,
        "validated": message.validated_count,
        "failed": message.failed_count,
        "pending": message.pending_count,
        "opened": message.opened_count,
        "percent_done": 100 if message.is_final and not message.pending_count else share(done),
        # A dry run's bar fills with validations: nothing was sent, but that part is done.
        "percent_sent": share(message.sent_count + message.validated_count),
        "percent_failed": share(message.failed_count),
        "open_rate": round(100 * message.open_rate, 1) if message.open_rate is not None else None,
    }


def describe_audience(audience: str, params: dict) -> str:
    """An audience in words: "Android and iOS devices in TR", "topic news"."""
    params = params or {}
    platforms = [str(Platform(p).label) for p in params.get("platforms", [])]
    where = []
    if params.get("countries"):
        where.append("in " + ", ".join(params["countries"]))
    if params.get("languages"):
        where.append("speaking " + ", ".join(params["languages"]))
    if audience == Audience.TOPIC:
        return f"Subscribers of topic “{params.get('topic', '')}”"
    if audience == Audience.CONDITION:
        return f"FCM condition {params.get('condition', '')}"
    if audience == Audience.USERS:
        ids = params.get("app_user_ids", [])
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3:,} more" if len(ids) > 3 else "")
        return f"{len(ids):,} app user{'s' if len(ids) != 1 else ''}: {shown}"
    if audience == Audience.TOKENS:
        n = len(params.get("tokens", []))
        return f"{n:,} device token{'s' if n != 1 else ''}"
    if audience == Audience.SEGMENT:
        name = Segment.objects.filter(pk=params.get("segment_id")).values_list("name", flat=True).first()
        return f"Segment “{name}”" if name else "A segment since deleted"
    if audience == Audience.RECIPIENTS:
        return "The users a campaign chose for this send"
    if audience == Audience.RULES:
        rules = params.get("rules") or {}
        return (
            f"Ad-hoc rules: {len(rules.get('include', []))} include and "
            f"{len(rules.get('exclude', []))} except groups"
        )
    base = " and ".join(platforms) + " devices" if platforms else "All devices"
    return " ".join([base, *where])


def status_chip(message: Message):
    return format_html(
        '<span class="hd-chip hd-status-{}">{}</span>', message.status, message.get_status_display()
    )


class SourceFilter(admin.SimpleListFilter):
    """By default the list leaves out POST /developer/push's one-user pushes, which a back
    end may send every few seconds and which would bury what staff composed; they are one
    click away."""

    title = "source"
    parameter_name = "source"
    ALL = "all"

    def lookups(self, request, model_admin):
        return [*Message.Source.choices, (self.ALL, "All sources")]

    def queryset(self, request, queryset):
        if self.value() == self.ALL:
            return queryset
        if self.value() in Message.Source.values:
            return queryset.filter(source=self.value())
        return queryset.composed()

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "display": "All but /developer/push",
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "display": label,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
            }


@admin.register(Message)
class MessageAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["title_column", "tenant", "status_column", "progress_column"]
    list_display_links = ["title_column"]
    list_filter = ["status", SourceFilter, "tenant"]
    search_fields = ["title", "body"]
    list_select_related = ["tenant"]
    list_per_page = 50
    add_role = change_role = Role.EDITOR

    # --- The list ---------------------------------------------------------------------

    @admin.display(description="message", ordering="created_at")
    def title_column(self, obj):
        if obj.status == Message.Status.SCHEDULED and obj.schedule_at:
            when = (
                f"scheduled for {formats.date_format(obj.schedule_local, 'DATETIME_FORMAT')} "
                f"{obj.schedule_zone_label}"
            )
        else:
            when = formats.date_format(timezone.localtime(obj.created_at), "DATETIME_FORMAT")
        body = obj.body[:90] + ("…" if len(obj.body) > 90 else "")
        return format_html(
            '<span class="hd-title">{}</span><span class="hd-sub"><span class="hd-num">{}</span> · {}</span>',
            obj.title,
            when,
            body,
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, obj):
        return status_chip(obj)

    @admin.display(description="delivered · opened")
    def progress_column(self, obj):
        p = progress(obj)
        if not obj.targeted_count:
            return mark_safe('<span class="hd-muted">—</span>')
        opened = ""
        if p["open_rate"] is not None:
            opened = format_html(
                '<span class="hd-sub">{} % opened</span>', formats.number_format(p["open_rate"], 0)
            )
        done, verb = (p["validated"], "validated") if obj.dry_run else (p["sent"], "sent")
        return format_html(
            '<span class="hd-mini-bar" title="{} {}, {} failed, {} pending">'
            '<span class="hd-bar-sent" style="width:{}%"></span>'
            '<span class="hd-bar-failed" style="width:{}%"></span></span>'
            '<span class="hd-num">{} / {}</span>{}{}',
            done,
            verb,
            p["failed"],
            p["pending"],
            p["percent_sent"],
            p["percent_failed"],
            formats.number_format(done, force_grouping=True),
            formats.number_format(p["targeted"], force_grouping=True),
            mark_safe(' <span class="hd-sub">validated, dry run</span>') if obj.dry_run else "",
            opened,
        )

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_compose": self.has_role(request, Role.EDITOR)}
        return super().changelist_view(request, extra_context)

    # --- URLs -------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("compose/", view(self.compose_view), name="messaging_message_compose"),
            path("compose/audience/", view(self.audience_view), name="messaging_message_audience"),
            path("<path:object_id>/progress/", view(self.progress_view), name="messaging_message_progress"),
            path("<path:object_id>/cancel/", view(self.cancel_view), name="messaging_message_cancel"),
            path("<path:object_id>/send/", view(self.send_view), name="messaging_message_send"),
            path(
                "<path:object_id>/deliveries.csv",
                view(self.deliveries_csv_view),
                name="messaging_message_deliveries_csv",
            ),
            path("<path:object_id>/winner/", view(self.winner_view), name="messaging_message_winner"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        # Messages are composed, not added as rows.
        if not self.has_add_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:messaging_message_compose"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return self.message_view(request, object_id)

    def _message(self, request, object_id, role=Role.VIEWER) -> Message:
        message = self.get_object(request, object_id)  # 404 outside the user's tenants
        if not self.has_role(request, role, message):
            raise PermissionDenied
        return message

    def _page(self, request, template, title, **context):
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, **context},
        )

    # --- The message page ----------------------------------------------------------------

    def message_view(self, request, object_id):
        message = self._message(request, object_id)
        failures = (
            message.deliveries.filter(status=Delivery.Status.FAILED)
            .select_related("device", "device__user")
            .order_by("error_code", "pk")
        )
        failure_code = request.GET.get("code", "")
        if failure_code:
            failures = failures.filter(error_code=failure_code)
        page = Paginator(failures, FAILURES_PER_PAGE).get_page(request.GET.get("page"))
        breakdown = [
            (code, n, checks.explain_fcm_error(code)) for code, n in error_breakdown(message).items()
        ]
        can_edit = self.has_role(request, Role.EDITOR, message)
        waiting = message.status in (Message.Status.SCHEDULED, Message.Status.DRAFT) or (
            message.status == Message.Status.CANCELLED and message.started_at is None
        )
        audience_now, audience_error = audience_now_of(message) if waiting else (None, "")
        return self._page(
            request,
            "admin/messaging/message/detail.html",
            message.title,
            message=message,
            original=message,
            progress=progress(message),
            breakdown=breakdown,
            waiting=waiting,
            audience_now=audience_now,
            audience_error=audience_error,
            failures=page,
            failure_code=failure_code,
            audience_text=describe_audience(message.audience, message.audience_params),
            can_cancel=can_edit and message.status in Message.CANCELLABLE,
            can_send=can_edit and message.status == Message.Status.DRAFT,
            can_compose=can_edit,
            multi_tenant=len(roles_of(request.user)) > 1,
            options=message.options or {},
            data_pairs=sorted((message.data or {}).items()),
            **variant_context(message, can_edit=can_edit),
        )

    def deliveries_csv_view(self, request, object_id):
        message = self._message(request, object_id)
        return csv_response(
            header=DELIVERY_EXPORT_COLUMNS,
            rows=delivery_export_rows(message),
            filename=f"message-{message.pk}-deliveries.csv",
        )

    def winner_view(self, request, object_id):
        """POST: staff pick an A/B test's winner by hand; it goes to the rest at once."""
        message = self._message(request, object_id, Role.EDITOR)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[message.pk]))
        try:
            variant = int(request.POST.get("variant", ""))
            variants.decide_winner(message_id=message.pk, variant=variant, decided_by=request.user)
        except ValueError:
            messages.error(request, "Choose a variant.")
        except variants.NotDecidable as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Variant {variants.label(variant)} won; it goes to the rest now.")
        return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[message.pk]))

    def progress_view(self, request, object_id):
        message = self._message(request, object_id)
        # The failures panel moves with the counters: failed deliveries by FCM error code.
        breakdown = [
            {"code": code, "count": n, "explanation": checks.explain_fcm_error(code)}
            for code, n in error_breakdown(message).items()
        ]
        return JsonResponse({**progress(message), "breakdown": breakdown})

    def _confirm_or_act(self, request, message, *, act, verb, question, done):
        """GET asks `question`; POST does `act` (a service) and goes back to the message page."""
        if request.method != "POST":
            return self._page(
                request,
                "admin/messaging/message/confirm.html",
                f"{verb} “{message.title}”",
                message=message,
                question=question,
                verb=verb,
            )
        try:
            act(message=message)
        except services.MessagingError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, done)
        return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[message.pk]))

    def cancel_view(self, request, object_id):
        message = self._message(request, object_id, Role.EDITOR)
        if message.status == Message.Status.SENDING:
            question = (
                "Cancel this message? Devices that have it already keep it "
                f"({message.sent_count:,} so far); nobody else will get it."
            )
        else:
            question = "Cancel this message? It has not gone out, and nobody will get it."
        return self._confirm_or_act(
            request,
            message,
            act=services.cancel_message,
            verb="Cancel",
            question=question,
            done=f"Cancelled “{message.title}”.",
        )

    def send_view(self, request, object_id):
        message = self._message(request, object_id, Role.EDITOR)
        size, error = audience_now_of(message)
        if error:  # it would reach nobody: say why on the message page, send nothing
            messages.error(request, error)
            return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[message.pk]))
        return self._confirm_or_act(
            request,
            message,
            act=services.send_message,
            verb="Send",
            question=f"Send this draft {audience_phrase(size)} now?",
            done=f"“{message.title}” is on its way.",
        )

    # --- The composer --------------------------------------------------------------------

    def compose_view(self, request):
        if not self.has_role(request, Role.EDITOR):
            raise PermissionDenied
        draft = None
        if draft_id := (request.POST if request.method == "POST" else request.GET).get("draft"):
            draft = self._message(request, draft_id, Role.EDITOR)
            if draft.status != Message.Status.DRAFT:
                messages.error(request, f"“{draft.title}” is no longer a draft; duplicate it to reuse it.")
                return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[draft.pk]))
        if request.method != "POST":
            initial = {}
            if draft is not None:
                initial = ComposeForm.initial_from(draft, with_schedule=True)
            elif source := request.GET.get("from"):
                initial = ComposeForm.initial_from(self._message(request, source))
            elif (tenant := request.GET.get("tenant", "")).isdigit() and tenants_for(
                request.user, Role.EDITOR
            ).filter(pk=int(tenant)).exists():
                # The tenant the user was looking at (dashboard, filtered list), if they may send for it.
                initial = {"tenant": int(tenant)}
            return self._compose_page(request, ComposeForm(user=request.user, initial=initial), draft=draft)

        form = ComposeForm(request.POST, user=request.user)
        action = request.POST.get("_action", "send")
        as_json = request.POST.get("_format") == "json"
        if not form.is_valid():
            if as_json:
                errors = {name: [str(e) for e in errors] for name, errors in form.errors.items()}
                if form.data_errors:  # shown under the data pairs, not as a form-wide error
                    errors["data"] = form.data_errors
                    errors.pop("__all__", None)
                return JsonResponse(
                    {"ok": False, "summary": "Correct the marked fields first.", "errors": errors}
                )
            return self._compose_page(request, form, draft=draft)

        tenant, spec = form.cleaned_data["tenant"], form.to_spec()
        if action == "draft":
            try:
                message = services.save_draft(tenant=tenant, spec=spec, created_by=request.user, draft=draft)
            except services.MessagingError as exc:
                messages.error(request, str(exc))
                return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[draft.pk]))
            messages.success(
                request, f"Saved the draft “{message.title}”. Send it from here when it is ready."
            )
            return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[message.pk]))
        if action in ("validate", "test"):
            if action == "validate":
                check = checks.validate_message(tenant=tenant, spec=spec)
            elif not form.cleaned_data["test_to"].strip():
                check = checks.FcmCheck(ok=False, summary="Enter an app user id or token to test.")
            else:
                check = checks.send_test_push(tenant=tenant, spec=spec, to=form.cleaned_data["test_to"])
            if as_json:
                return JsonResponse(check.as_json())
            return self._compose_page(request, form, check=check, check_action=action, draft=draft)

        try:
            size, blocked = services.recipients(tenant=tenant, spec=spec), False
        except services.NoTargetableDevice:  # nobody to send to now: say so, send nothing
            size, blocked = 0, True
        if action == "confirm" and not blocked:
            if draft is None:
                message, _ = services.create_message(
                    tenant=tenant, spec=spec, source=Message.Source.ADMIN, created_by=request.user
                )
            else:
                try:
                    message = services.send_message(
                        message=services.save_draft(
                            tenant=tenant, spec=spec, created_by=request.user, draft=draft
                        )
                    )
                except services.MessagingError as exc:
                    messages.error(request, str(exc))
                    return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[draft.pk]))
            verb = "scheduled" if message.status == Message.Status.SCHEDULED else "is on its way"
            messages.success(request, f"“{message.title}” {verb}.")
            return HttpResponseRedirect(reverse("admin:messaging_message_change", args=[message.pk]))
        question = confirmation(spec, size, tz_name=form.cleaned_data["schedule_tz"])
        if as_json:
            return JsonResponse({"ok": True, "size": size, "confirm": question, "blocked": blocked})
        return self._compose_page(request, form, confirm=question, blocked=blocked, draft=draft)

    def _compose_page(self, request, form, draft=None, **context):
        tenants = form.fields["tenant"].queryset
        return self._page(
            request,
            "admin/messaging/message/compose.html",
            "Edit the draft" if draft else "Compose a push",
            form=form,
            draft=draft,
            tenant_names={str(t.pk): t.name for t in tenants},
            single_tenant=tenants.count() == 1,
            tenant_languages={str(t.pk): t.default_language for t in tenants},
            language_codes=sorted(LANGUAGES),
            **context,
        )

    def audience_view(self, request):
        """The size of the audience the composer describes, as JSON: {"size": n, "text": "…"}."""
        if not self.has_role(request, Role.EDITOR):
            raise PermissionDenied
        form = ComposeForm(request.POST if request.method == "POST" else request.GET, user=request.user)
        form.is_valid()
        for name, errors in form.errors.as_data().items():
            if name in AUDIENCE_FIELDS:
                # A segment whose stored rules cannot be used is no choice to correct here: a 400.
                status = 400 if errors[0].code == UNUSABLE_RULES else 200
                return JsonResponse({"size": None, "ok": False, "text": errors[0].messages[0]}, status=status)
        c = form.cleaned_data
        params = form.audience_params()
        size = audience_size(tenant=c["tenant"], audience=c["audience"], params=params)
        users = audience_users(tenant=c["tenant"], audience=c["audience"], params=params)
        if users is not None:  # a segment or rules: counted as the segment editor counts them
            text = reach_text(users, size)
            return JsonResponse({"size": size, "users": users, "ok": True, "text": text})
        if size is None:
            text = "FCM delivers to the topic's subscribers; Herald cannot count them"
        elif size == 0:
            text = "No device matches this audience"
        else:
            text = f"{size:,} device{'s' if size != 1 else ''} will get it"
        return JsonResponse({"size": size, "ok": True, "text": text})


def audience_now_of(message: Message) -> tuple[int | None, str]:
    """How many devices a waiting message would reach now (None: FCM decides), and "" or why
    it reaches nobody: its segment's (or its own) stored rules cannot be used."""
    try:
        size = audience_size(tenant=message.tenant, audience=message.audience, params=message.audience_params)
    except UnusableAudience as exc:
        return None, f"{exc}; it would reach nobody."
    return size, ""


def reach_text(users: int, devices: int) -> str:
    """ "≈ 1 user · 2 devices that allow pushes", as the segment editor says it (rule_builder.js)."""
    return f"≈ {users:,} user{'' if users == 1 else 's'} · {devices:,} " + (
        "device that allows pushes" if devices == 1 else "devices that allow pushes"
    )


def audience_phrase(size: int | None) -> str:
    """ "to 1,234 devices", "to every subscriber of the topic" ."""
    if size is None:
        return "to every device subscribed to the topic (FCM knows how many; Herald does not)"
    return f"to {size:,} device{'s' if size != 1 else ''}"


def confirmation(spec: services.MessageInput, size: int | None, *, tz_name: str) -> str:
    """The question the composer asks before it sends or schedules."""
    if spec.schedule_at is None:
        if size == 0:
            return "No device matches this audience right now, so nothing would be sent."
        return f"Send “{spec.title}” {audience_phrase(size)} now?"
    local = timezone.localtime(spec.schedule_at, spec.schedule_at.tzinfo)
    when = formats.date_format(local, "DATETIME_FORMAT") + f" ({tz_name})"
    if size is None:
        return f"Schedule “{spec.title}” for {when}, {audience_phrase(size)}?"
    return (
        f"Schedule “{spec.title}” for {when}? It would reach {size:,} device{'s' if size != 1 else ''} "
        "if sent now; Herald counts the audience again when it goes out."
    )


# --- Firebase credentials: checking one talks to FCM, so the action lives here -------------

admin.site.unregister(FirebaseCredential)


@admin.register(FirebaseCredential)
class FirebaseCredentialAdmin(tenants_admin.FirebaseCredentialAdmin):
    """The tenants' credential admin, with the action that proves a credential works."""

    actions = ["check_selected"]

    @admin.action(
        description="Check credentials (get a token, validate a test message)",
        location=[admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM],
    )
    def check_selected(self, request, queryset):
        for credential in queryset.select_related("tenant"):
            if not self.has_role(request, Membership.Role.EDITOR, credential):
                continue
            result = services.check_credentials(tenant=credential.tenant)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{credential.tenant}: {result.message}", level=level)


def variant_context(message: Message, *, can_edit: bool) -> dict:
    """The message page's variants and languages: content, figures, charts, the A/B test."""
    stats = content_stats(message)
    composed = content.variants_of(message)
    ab_test = getattr(message, "ab_test", None) if message.variant_mode == "ab_test" else None
    rows = []
    for stat, variant in zip(stats["variants"], composed, strict=True):
        rows.append(
            {
                "label": variants.label(stat.key),
                "index": stat.key,
                "stat": stat,
                "content": variant.content,
                "languages": sorted(variant.localizations),
                "rate": None if stat.open_rate is None else round(100 * stat.open_rate, 1),
            }
        )
    languages = [
        {
            "stat": s,
            "rate": None if s.open_rate is None else round(100 * s.open_rate, 1),
            "default": s.key == message.language,
        }
        for s in stats["languages"]
    ]
    return {
        "variant_rows": rows if message.variant_count > 1 else [],
        "language_rows": languages,
        "message_languages": [message.language, *sorted(composed[0].localizations)],
        "ab_test": ab_test,
        "winner_label": variants.label(ab_test.winner) if ab_test and ab_test.winner is not None else "",
        "can_pick_winner": bool(
            can_edit and ab_test and ab_test.winner is None and message.status == Message.Status.SENDING
        ),
        "variant_chart": charts.rate_bars(
            rows=[(f"Variant {r['label']}", r["stat"].open_rate, r["stat"].sent) for r in rows],
            label="Open rate per variant",
        )
        if message.variant_count > 1
        else "",
        "language_chart": charts.rate_bars(
            rows=[(r["stat"].key, r["stat"].open_rate, r["stat"].sent) for r in languages],
            label="Open rate per language",
        )
        if len(languages) > 1
        else "",
    }
