from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from tenants.models import ApiKey, Membership, Tenant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant_id", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "tenant_id"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "kind", "prefix_display", "state", "last_used_at", "created_at"]
    list_filter = ["kind", "tenant"]
    search_fields = ["name", "prefix", "tenant__name", "tenant__tenant_id"]
    fields = ["tenant", "name", "kind"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        # A key's identity is fixed at birth; only its name may change.
        return ["tenant", "kind", "prefix", "created_at", "last_used_at", "revoked_at"] if obj else []

    def get_fields(self, request, obj=None):
        if obj:
            return ["tenant", "name", "kind", "prefix", "created_at", "last_used_at", "revoked_at"]
        return self.fields

    @admin.display(description="key")
    def prefix_display(self, obj):
        return f"{obj.prefix}…"

    @admin.display(description="state")
    def state(self, obj):
        return format_html('<span style="color:#b00">revoked</span>') if obj.is_revoked else "active"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = ApiKey.generate(
            tenant=obj.tenant, name=obj.name, kind=obj.kind, created_by=request.user
        )
        obj.pk = key.pk
        obj.__dict__.update(key.__dict__)
        messages.warning(
            request,
            format_html(
                "Copy the new {} key now; Herald keeps only its hash and will never show it "
                "again: <code style='user-select:all'>{}</code>",
                key.get_kind_display(), raw,
            ),
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")
