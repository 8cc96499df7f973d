"""Template tags for Herald's admin pages: the dashboard on the admin index, small formatters."""

from django import template
from django.utils.html import format_html

from messaging import selectors, variants
from tenants.scoping import Role, has_role, roles_of, tenant_ids, tenants_for

register = template.Library()


@register.inclusion_tag("admin/herald/dashboard.html", takes_context=True)
def herald_dashboard(context):
    """The dashboard of the tenants the user may see (or of the one chosen with ?tenant=)."""
    request = context["request"]
    user = request.user
    tenants = list(tenants_for(user))
    chosen = next((t for t in tenants if str(t.pk) == request.GET.get("tenant", "")), None)
    try:
        days = int(request.GET.get("days", selectors.DEFAULT_PERIOD))
    except ValueError:
        days = selectors.DEFAULT_PERIOD
    if days not in selectors.PERIODS:
        days = selectors.DEFAULT_PERIOD
    ids = [chosen.pk] if chosen else [t.pk for t in tenants]
    return {
        "request": request,
        "user": user,
        "tenants": tenants,
        "chosen": chosen,
        "days": days,
        "periods": selectors.PERIODS,
        "board": selectors.dashboard(tenant_ids=ids, days=days) if tenants else None,
        "can_compose": has_role(user, chosen, Role.EDITOR) if chosen else bool(tenant_ids(user, Role.EDITOR)),
    }


@register.filter
def percent(value, digits=0):
    """73.456 → "73 %"; None → "—"."""
    if value is None:
        return "—"
    return f"{value:.{int(digits)}f} %"


@register.filter
def chip(message):
    return format_html(
        '<span class="hd-chip hd-status-{}">{}</span>', message.status, message.get_status_display()
    )


@register.filter
def grouped(value):
    """1234567 → "1,234,567"."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return value


DURATION_UNITS = [(7 * 86400, "week"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")]


@register.filter
def duration(seconds):
    """2419200 → "4 weeks"; 5400 → "90 minutes": the largest unit that divides it evenly."""
    seconds = int(seconds or 0)
    if seconds == 0:
        return "0 seconds (deliver now or never)"
    for size, name in DURATION_UNITS:
        if seconds % size == 0:
            n = seconds // size
            return f"{n:,} {name}{'s' if n != 1 else ''}"
    return f"{seconds:,} seconds"  # pragma: no cover


@register.simple_tag
def staff_role(user) -> str:
    """ "Editor, Acme", "Superuser", "Member of 3 tenants": who the header says is signed in."""
    if user.is_superuser:
        return "Superuser"
    roles = roles_of(user)
    if len(roles) == 1:
        ((tenant_pk, role),) = roles.items()
        tenant = next((t for t in tenants_for(user) if t.pk == tenant_pk), None)
        return f"{Role(role).label}, {tenant.name}" if tenant else Role(role).label
    return f"Member of {len(roles)} tenants" if roles else "No tenant yet"


@register.filter
def variant_label(index):
    """0 → A, 1 → B: how pages name variants."""
    return variants.label(int(index))
