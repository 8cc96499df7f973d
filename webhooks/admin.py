"""Webhooks in the admin: endpoints (with their secret shown once), the attempt log, the outbox.

Tenant admins register, change, rotate and delete endpoints; editors send test events
and replay attempts and events; viewers look. Everything is scoped by tenants.scoping.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from tenants.scoping import Role, SecretShownOnceAddMixin, TenantScopedAdminMixin, tenant_ids
from webhooks import services
from webhooks.models import Attempt, Endpoint, Event, EventType

RECENT_ATTEMPTS = 20


class EndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What Herald posts to this URL.",
    )

    class Meta:
        model = Endpoint
        fields = ["tenant", "url", "description", "event_types"]
        widgets = {"url": forms.URLInput(attrs={"size": 80, "placeholder": "https://"})}

    def clean_url(self):
        try:
            return services.check_endpoint_url(self.cleaned_data["url"])
        except services.WebhookError as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from None


def endpoint_state(endpoint: Endpoint) -> str:
    if not endpoint.is_enabled:
        return format_html(
            '<span class="hd-chip hd-chip-bad" title="{}">disabled</span> {}',
            endpoint.disabled_reason,
            endpoint.disabled_reason,
        )
    if endpoint.consecutive_failures:
        return format_html(
            '<span class="hd-chip hd-chip-warn">failing</span> {} in a row since {} ago',
            endpoint.consecutive_failures,
            timesince(endpoint.failing_since),
        )
    return mark_safe('<span class="hd-chip hd-chip-ok">enabled</span>')


class EndpointFilter(admin.SimpleListFilter):
    """Filter by endpoint, offering only the endpoints of the user's tenants."""

    title = "endpoint"
    parameter_name = "endpoint"

    def lookups(self, request, model_admin):
        endpoints = Endpoint.objects.all()
        if not request.user.is_superuser:
            endpoints = endpoints.filter(tenant_id__in=tenant_ids(request.user))
        return [(str(e.pk), e.url) for e in endpoints.order_by("pk")]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(endpoint_id=value) if value and value.isdigit() else queryset


@admin.register(Endpoint)
class EndpointAdmin(SecretShownOnceAddMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "tenant", "events", "state", "last_attempt"]
    list_filter = ["tenant"]
    search_fields = ["url", "description", "tenant__name", "tenant__tenant_id"]
    list_select_related = ["tenant"]
    actions = ["send_test_event", "rotate_secret", "enable", "disable"]
    view_role = Role.VIEWER
    add_role = change_role = delete_role = Role.ADMIN
    SHOWN = [
        "state",
        "created_at",
        "last_success_at",
        "retry_at",
        "previous_secret_expires_at",
        "recent_attempts",
    ]

    def get_fields(self, request, obj=None):
        fields = ["tenant", "url", "description", "event_types"]
        return fields if obj is None else [*fields, *self.SHOWN]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["tenant", *self.SHOWN]

    @admin.display(description="events")
    def events(self, obj):
        return ", ".join(obj.event_types)

    @admin.display(description="state")
    def state(self, obj):
        return endpoint_state(obj)

    @admin.display(description="last attempt")
    def last_attempt(self, obj):
        attempt = obj.attempts.order_by("-attempted_at", "-id").first()
        if attempt is None:
            return mark_safe('<span class="hd-muted">never</span>')
        word = "ok" if attempt.ok else (str(attempt.status_code or attempt.error))
        chip = "hd-chip-ok" if attempt.ok else "hd-chip-bad"
        return format_html(
            '<span class="hd-chip {}">{}</span> {} ago', chip, word, timesince(attempt.attempted_at)
        )

    @admin.display(description="recent attempts")
    def recent_attempts(self, obj):
        attempts = obj.attempts.select_related("batch").order_by("-attempted_at", "-id")[:RECENT_ATTEMPTS]
        everything = reverse("admin:webhooks_attempt_changelist") + f"?endpoint={obj.pk}"
        events = reverse("admin:webhooks_event_changelist") + f"?endpoint={obj.pk}"
        links = format_html(
            '<p><a href="{}">All attempts</a> · <a href="{}">Events</a></p>', everything, events
        )
        if not attempts.exists():
            return links + mark_safe('<p class="hd-muted">No attempt yet.</p>')
        row = "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>"
        rows = format_html_join(
            "",
            row,
            (
                (
                    a.attempted_at.strftime("%Y-%m-%d %H:%M:%S"),
                    a.get_trigger_display(),
                    a.batch.webhook_id if a.batch else "",
                    a.status_code or "",
                    a.latency_ms,
                    "ok" if a.ok else (a.detail or a.error),
                )
                for a in attempts
            ),
        )
        return links + format_html(
            '<table class="hd-table"><thead><tr><th>when</th><th>why</th><th>webhook-id</th><th>status</th>'
            "<th>latency</th><th>result</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def changelist_view(self, request, extra_context=None):
        disabled = self.get_queryset(request).filter(disabled_at__isnull=False).select_related("tenant")
        for endpoint in disabled[:10]:
            messages.warning(
                request,
                f"Herald disabled the webhook endpoint {endpoint.url} "
                f"({endpoint.tenant.name}): {endpoint.disabled_reason} "
                "Fix it, then use “Enable”.",
            )
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            endpoint = self.get_object(request, object_id)
            if not endpoint.is_enabled:
                messages.warning(
                    request,
                    f"This endpoint is disabled: {endpoint.disabled_reason} "
                    "Nothing is posted to it until it is enabled again.",
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            services.update_endpoint(
                endpoint=obj,
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
            )
            return
        try:
            endpoint, secret = services.create_endpoint(
                tenant=data["tenant"],
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
            )
        except services.WebhookError as exc:
            messages.error(request, str(exc))
            raise
        obj.pk = endpoint.pk
        obj.__dict__.update(endpoint.__dict__)
        request._herald_new_secret = secret

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_herald_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self.show_secret(request, obj, secret, "Copy the signing secret")

    def show_secret(self, request, endpoint, secret, title):
        # The secret is in this response and nowhere else in clear: Herald stores it encrypted.
        response = TemplateResponse(
            request,
            "admin/webhooks/endpoint/secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                "endpoint": endpoint,
                "secret": secret,
                "tenant_name": endpoint.tenant.name,
            },
        )
        add_never_cache_headers(response)
        return response

    # --- Buttons ----------------------------------------------------------------------------

    def has_test_permission(self, request, obj=None):
        return self.has_role(request, Role.EDITOR, obj)

    def has_manage_permission(self, request, obj=None):
        return self.has_role(request, Role.ADMIN, obj)

    def _allowed_endpoints(self, request, queryset, role):
        return [e for e in queryset.select_related("tenant") if self.has_role(request, role, e)]

    @admin.action(
        description="Send a test event",
        permissions=["test"],
        location=[admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM],
    )
    def send_test_event(self, request, queryset):
        for endpoint in self._allowed_endpoints(request, queryset, Role.EDITOR):
            attempt = services.send_test_event(endpoint=endpoint)
            report_attempt(self, request, endpoint, attempt, "Test event")

    @admin.action(
        description="Rotate the signing secret",
        permissions=["manage"],
        location=[admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM],
    )
    def rotate_secret(self, request, queryset):
        endpoints = self._allowed_endpoints(request, queryset, Role.ADMIN)
        if len(endpoints) != 1:
            self.message_user(request, "Rotate one endpoint's secret at a time.", messages.WARNING)
            return None
        secret = services.rotate_secret(endpoint=endpoints[0])
        self.log_change(request, endpoints[0], "Rotated the signing secret.")
        return self.show_secret(request, endpoints[0], secret, "Copy the new signing secret")

    @admin.action(
        description="Enable (forget failures, send what waited)",
        permissions=["manage"],
        location=[admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM],
    )
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(
        description="Disable",
        permissions=["manage"],
        location=[admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM],
    )
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool):
        word = "Enabled." if enabled else "Disabled."
        for endpoint in self._allowed_endpoints(request, queryset, Role.ADMIN):
            services.update_endpoint(endpoint=endpoint, enabled=enabled)
            self.log_change(request, endpoint, word)
        self.message_user(request, word, messages.SUCCESS)


def report_attempt(model_admin, request, endpoint, attempt, what):
    if attempt.ok:
        model_admin.message_user(
            request,
            f"{what} to {endpoint.url}: HTTP {attempt.status_code} in {attempt.latency_ms} ms.",
            messages.SUCCESS,
        )
    else:
        model_admin.message_user(
            request, f"{what} to {endpoint.url} failed: {attempt.detail or attempt.error}.", messages.ERROR
        )


class ReadOnlyLogAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Rows Herald writes: looked at, replayed, never edited by hand."""

    tenant_path = "endpoint__tenant"
    view_role = Role.VIEWER
    add_role = change_role = delete_role = None
    list_filter = [EndpointFilter]

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_replay_permission(self, request, obj=None):
        return self.has_role(request, Role.EDITOR, obj)


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyLogAdmin):
    list_display = [
        "attempted_at",
        "endpoint",
        "trigger",
        "webhook_id",
        "event_count",
        "status_code",
        "latency",
        "result",
    ]
    list_filter = [EndpointFilter, "ok", "trigger", "error"]
    list_select_related = ["endpoint", "batch"]
    actions = ["replay"]

    @admin.display(description="webhook-id")
    def webhook_id(self, obj):
        return obj.batch.webhook_id if obj.batch else "—"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return f"{obj.latency_ms} ms"

    @admin.display(description="result")
    def result(self, obj):
        if obj.ok:
            return mark_safe('<span class="hd-chip hd-chip-ok">ok</span>')
        return format_html('<span class="hd-chip hd-chip-bad">{}</span> {}', obj.error, obj.detail)

    @admin.action(description="Replay (post the same batch again now)", permissions=["replay"])
    def replay(self, request, queryset):
        for attempt in queryset.select_related("batch__endpoint"):
            if attempt.batch is None or not self.has_replay_permission(request, attempt):
                continue
            report_attempt(
                self,
                request,
                attempt.batch.endpoint,
                services.replay_batch(batch=attempt.batch),
                f"Replay of {attempt.batch.webhook_id}",
            )


@admin.register(Event)
class EventAdmin(ReadOnlyLogAdmin):
    list_display = ["event_id", "type", "endpoint", "created_at", "delivery"]
    list_filter = [EndpointFilter, "type"]
    list_select_related = ["endpoint", "batch"]
    actions = ["replay"]
    fields = ["endpoint", "type", "created_at", "batch", "data"]

    @admin.display(description="delivery")
    def delivery(self, obj):
        if obj.batch is None:
            return mark_safe('<span class="hd-chip hd-chip-info">waiting</span>')
        if obj.batch.status == obj.batch.Status.DELIVERED:
            return format_html(
                '<span class="hd-chip hd-chip-ok">delivered</span> in {}', obj.batch.webhook_id
            )
        return format_html(
            '<span class="hd-chip hd-chip-warn">retrying</span> {} attempts', obj.batch.attempts
        )

    @admin.action(description="Replay (post again now, as a new event)", permissions=["replay"])
    def replay(self, request, queryset):
        for event in queryset.select_related("endpoint"):
            if self.has_replay_permission(request, event):
                report_attempt(
                    self,
                    request,
                    event.endpoint,
                    services.replay_event(event=event),
                    f"Replay of {event.event_id}",
                )
