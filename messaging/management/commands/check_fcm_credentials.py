from django.core.management.base import BaseCommand, CommandError

from messaging.services import check_credentials
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Check a tenant's Firebase credential: get an access token and have FCM validate a "
        "test message (validate_only, nothing is delivered). Exits 1 when it does not work."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's tenant_id")

    def handle(self, *args, tenant, **options):
        try:
            owner = Tenant.objects.get(tenant_id=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with tenant_id {tenant!r}.") from None
        result = check_credentials(tenant=owner)
        source = "stored credential" if result.source == "stored" else result.source
        self.stdout.write(f"{owner}: project {result.project_id or '?'} ({source})")
        if not result.ok:
            raise CommandError(result.message)
        self.stdout.write(self.style.SUCCESS(result.message))
