from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from tenants.credentials import MAX_FILE_BYTES, InvalidServiceAccount, parse_service_account, set_credentials
from tenants.models import ApiKey, FirebaseCredential, Membership, Tenant
from tenants.scoping import Role, SecretShownOnceAddMixin, TenantScopedAdminMixin, tenant_ids


class KeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "tenant_id", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "tenant_id"]
    inlines = [MembershipInline]
    # Members see their tenants; only superusers create, change and delete them.
    tenant_path = "pk"
    add_role = change_role = delete_role = None
    fieldsets = [
        (None, {"fields": ["name", "tenant_id", "is_active", "created_at"]}),
        (
            "Retention",
            {
                "fields": [
                    "retention_events_days",
                    "retention_deliveries_days",
                    "retention_token_history_days",
                    "retention_last_run",
                ],
                "description": "A daily task deletes rows older than this, in small batches.",
            },
        ),
        (
            "Marketing limits",
            {
                "fields": ["marketing_daily_cap", "quiet_hours_start", "quiet_hours_end"],
                "description": "Campaigns and staff messages; transactional pushes (/developer/push, "
                "API messages flagged transactional) are exempt. Pushes that fall in the quiet "
                "hours are sent when they end (or dropped, if a campaign says so).",
            },
        ),
    ]
    readonly_fields = ["retention_last_run"]

    def get_inlines(self, request, obj):
        return self.inlines if request.user.is_superuser else []

    @admin.display(description="last run")
    def retention_last_run(self, obj):
        kept = (
            ", ".join(
                f"{kind.replace('_', ' ')} {f'{days:,} days' if days else 'forever'}"
                for kind, days in obj.retention_days().items()
            )
            if obj.pk
            else ""
        )
        report = obj.retention_report or {}
        if not obj.retention_ran_at:
            return format_html("Not run yet. Kept: {}.", kept)
        return format_html(
            "{}: deleted {} events, {} deliveries (of {} messages) and {} token rotations in {} "
            "batches, {} s. Kept: {}.",
            date_format(timezone.localtime(obj.retention_ran_at), "j M Y, H:i"),
            f"{report.get('events', 0):,}",
            f"{report.get('deliveries', 0):,}",
            f"{report.get('messages_pruned', 0):,}",
            f"{report.get('token_rotations', 0):,}",
            f"{report.get('batches', 0):,}",
            report.get("seconds", 0),
            kept,
        )

    actions = ["deactivate_tenants"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            obj.announce_deactivation()
            self.message_user(
                request,
                f"{obj} is deactivated: its scheduled and sending messages were cancelled.",
                messages.WARNING,
            )

    @admin.action(
        description="Deactivate selected tenants (cancels their scheduled and sending messages)",
        permissions=["change"],
    )
    def deactivate_tenants(self, request, queryset):
        count = sum(tenant.deactivate() for tenant in queryset)
        self.message_user(request, f"Deactivated {count} tenant(s); their pending messages were cancelled.")


@admin.register(ApiKey)
class ApiKeyAdmin(SecretShownOnceAddMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name_column", "tenant", "kind_column", "state", "last_use", "created"]
    list_display_links = ["name_column"]
    list_filter = ["kind", KeyStateFilter, "tenant"]
    search_fields = ["name", "prefix", "tenant__name", "tenant__tenant_id"]
    list_select_related = ["tenant", "created_by"]
    fields = ["tenant", "name", "kind"]
    radio_fields = {"kind": admin.VERTICAL}
    actions = ["revoke_keys"]
    # Everyone in the tenant sees its keys (never more than their prefix); tenant admins
    # create, rename and revoke them. Keys are revoked, not deleted: the row is the audit.
    view_role = Role.VIEWER
    add_role = change_role = Role.ADMIN

    def has_delete_permission(self, request, obj=None):
        return False  # not even for superusers: no "Delete selected API keys", no delete page

    def get_readonly_fields(self, request, obj=None):
        # A key's identity is fixed at birth; only its name may change.
        if obj is None:
            return []
        return ["tenant", "kind", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj:
            return [
                "tenant",
                "name",
                "kind",
                "prefix",
                "created_at",
                "created_by",
                "last_used_at",
                "revoked_at",
            ]
        return self.fields

    @admin.display(description="kind", ordering="kind")
    def kind_column(self, obj):
        server = obj.kind == ApiKey.Kind.SERVER
        return format_html(
            '<span class="hd-chip {}">{}</span>',
            "hd-chip-warn" if server else "hd-chip-info",
            "server" if server else "app",
        )

    @admin.display(description="key", ordering="name")
    def name_column(self, obj):
        return format_html(
            '<span class="hd-title">{}</span><code class="hd-sub hd-code">{}…</code>', obj.name, obj.prefix
        )

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        by = f" by {obj.created_by.get_username()}" if obj.created_by else ""
        return format_html(
            '<span class="hd-num">{}</span><span class="hd-sub">{}</span>',
            date_format(timezone.localtime(obj.created_at), "DATE_FORMAT"),
            by.strip(),
        )

    @admin.display(description="state", ordering="revoked_at")
    def state(self, obj):
        if obj.is_revoked:
            return format_html(
                '<span class="hd-chip hd-chip-bad" title="{}">revoked</span>',
                date_format(timezone.localtime(obj.revoked_at), "DATETIME_FORMAT"),
            )
        return mark_safe('<span class="hd-chip hd-chip-ok">active</span>')

    @admin.display(description="last used", ordering="last_used_at")
    def last_use(self, obj):
        if obj.last_used_at is None:
            return mark_safe('<span class="hd-muted">never</span>')
        return format_html(
            '<span title="{}">{} ago</span>',
            date_format(timezone.localtime(obj.last_used_at), "DATETIME_FORMAT"),
            timesince(obj.last_used_at),
        )

    def get_list_display(self, request):
        columns = super().get_list_display(request)
        may_revoke = set(tenant_ids(request.user, Role.ADMIN))
        if not may_revoke:
            return columns

        @admin.display(description="")
        def revoke_link(obj):
            if obj.is_revoked or obj.tenant_id not in may_revoke:
                return mark_safe("<span></span>")  # not "", which the admin shows as "-"
            return format_html(
                '<a class="hd-revoke" href="{}">Revoke…</a>',
                reverse("admin:tenants_apikey_revoke", args=[obj.pk]),
            )

        return [*columns, revoke_link]

    def has_revoke_permission(self, request, obj=None):
        return self.has_role(request, Role.ADMIN, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="tenants_apikey_revoke",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = ApiKey.generate(tenant=obj.tenant, name=obj.name, kind=obj.kind, created_by=request.user)
        obj.pk = key.pk
        obj.__dict__.update(key.__dict__)
        request._herald_new_key = raw

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_herald_new_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        # The key is in this response and nowhere else: Herald keeps only its hash.
        response = TemplateResponse(
            request,
            "admin/tenants/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Copy your new key",
                "key": obj,
                "secret": raw,
                "tenant_name": obj.tenant.name,
            },
        )
        add_never_cache_headers(response)
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "revoke_permission": False}
        key = self.get_object(request, object_id)
        extra_context["revoke_permission"] = not key.is_revoked and self.has_revoke_permission(request, key)
        return super().change_view(request, object_id, form_url, extra_context)

    def revoke_view(self, request, object_id):
        key = self.get_object(request, object_id)
        if not self.has_revoke_permission(request, key):
            raise PermissionDenied
        changelist = reverse("admin:tenants_apikey_changelist")
        if request.method == "POST":
            if not key.is_revoked:
                key.revoke()
                self.log_change(request, key, "Revoked.")
                messages.success(request, f"Revoked {key}. Requests with it now get 401.")
            return HttpResponseRedirect(changelist)
        return TemplateResponse(
            request,
            "admin/herald/confirm.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Revoke {key.name}",
                "question": f"Revoke the {key.get_kind_display().split(' (')[0].lower()} “{key.name}” "
                f"({key.prefix}…) of {key.tenant.name}?",
                "warning": "Every app or server using it gets 401 from now on. This cannot be undone.",
                "confirm_label": "Yes, revoke it",
                "danger": True,
                "back": changelist,
            },
        )

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset):
        keys = [
            k
            for k in queryset.filter(revoked_at__isnull=True).select_related("tenant")
            if self.has_revoke_permission(request, k)
        ]
        if not keys:
            self.message_user(request, "None of the selected keys is active.", messages.WARNING)
            return None
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(
                request,
                "admin/tenants/apikey/revoke_selected.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": "Revoke keys",
                    "keys": keys,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        for key in keys:
            key.revoke()
            self.log_change(request, key, "Revoked.")
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)
        return None


# --- Firebase credentials ---------------------------------------------------------------
# Checking a credential talks to Google, which only messaging does: its admin adds the
# "Check credentials" action to this one (imports flow tenants <- messaging).


class FirebaseCredentialForm(forms.ModelForm):
    service_account_file = forms.FileField(
        label="Service-account key (JSON)",
        help_text=(
            "Firebase console > Project settings > Service accounts > Generate new private key. "
            "The private key is encrypted at rest and never shown again."
        ),
    )

    class Meta:
        model = FirebaseCredential
        fields = ["tenant"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            field = self.fields["service_account_file"]
            field.label = "Replace with a new key"
            field.error_messages["required"] = "Choose the new service-account JSON file to upload first."

    def clean_service_account_file(self) -> bytes | None:
        upload = self.cleaned_data.get("service_account_file")
        if not upload:
            return None
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError("This file is far too large for a service-account key.")
        raw = upload.read()
        try:
            parse_service_account(raw)
        except InvalidServiceAccount as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from None
        return raw


@admin.register(FirebaseCredential)
class FirebaseCredentialAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = FirebaseCredentialForm
    list_display = ["tenant", "project_id", "client_email", "key_id", "uploaded_at", "last_check"]
    list_filter = ["tenant"]
    search_fields = ["tenant__name", "tenant__tenant_id", "project_id", "client_email"]
    # Tenant admins manage the credential; editors may check it; viewers only look.
    view_role = Membership.Role.VIEWER
    add_role = change_role = delete_role = Membership.Role.ADMIN
    # Never the private key: it is not a field of any form, and not shown.
    SHOWN = [
        "project_id",
        "client_email",
        "private_key_id",
        "token_uri",
        "uploaded_at",
        "uploaded_by",
        "last_check",
        "last_check_message",
    ]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "service_account_file"]
        return ["tenant", *self.SHOWN, "service_account_file"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", *self.SHOWN] if obj else []

    @admin.display(description="key ID", ordering="private_key_id")
    def key_id(self, obj: FirebaseCredential):
        # 40 hex digits in one unbreakable run would push the list's last columns off screen.
        if not obj.private_key_id:
            return "—"
        return format_html(
            '<code class="hd-code" title="{}">{}…</code>', obj.private_key_id, obj.private_key_id[:10]
        )

    @admin.display(description="last check")
    def last_check(self, obj: FirebaseCredential):
        if obj.last_checked_at is None:
            return "never"
        colour, word = ("#080", "works") if obj.last_check_ok else ("#b00", "failed")
        return format_html(
            '<span style="color:{}" title="{}">{}</span> {}',
            colour,
            obj.last_check_message,
            word,
            date_format(timezone.localtime(obj.last_checked_at), "DATETIME_FORMAT"),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        credential = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_check": self.has_role(request, Membership.Role.EDITOR, credential),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        raw = form.cleaned_data["service_account_file"]  # required: a form without a file is refused
        credential = set_credentials(tenant=obj.tenant, raw=raw, uploaded_by=request.user)
        obj.pk = credential.pk
        obj.__dict__.update(credential.__dict__)
        messages.info(
            request,
            f"Stored the key of {credential.client_email} for project {credential.project_id}. "
            "Use “Check now” on its page to make sure it works.",
        )
