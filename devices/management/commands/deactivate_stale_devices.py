from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devices.models import Device
from devices.services import deactivate_stale_devices
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Deactivate devices not seen for a while (default: DEVICE_STALE_AFTER_DAYS, 270, FCM's own expiry)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)
        parser.add_argument("--tenant", help="a tenant_id; all tenants when omitted")

    def handle(self, *args, days, tenant, **options):
        days = days if days is not None else settings.DEVICE_STALE_AFTER_DAYS
        if days < 1:
            raise CommandError("--days must be at least 1.")
        owner = None
        if tenant:
            owner = Tenant.objects.filter(tenant_id=tenant).first()
            if owner is None:
                raise CommandError(f"No tenant with tenant_id {tenant!r}.")
        count = deactivate_stale_devices(tenant=owner, days=days)
        active = Device.objects.filter(is_active=True)
        if owner:
            active = active.filter(tenant=owner)
        self.stdout.write(
            f"Deactivated {count} device(s) not seen for {days} days; "
            f"{active.count()} active device(s) remain."
        )
