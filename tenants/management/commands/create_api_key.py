from django.core.management.base import BaseCommand, CommandError

from tenants.models import ApiKey, Tenant


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it. Herald stores only its hash."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's tenant_id")
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", choices=[k.value for k in ApiKey.Kind], required=True)

    def handle(self, *args, tenant, name, kind, **options):
        try:
            owner = Tenant.objects.get(tenant_id=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with tenant_id {tenant!r}.") from None
        _, raw = ApiKey.generate(tenant=owner, name=name, kind=kind)
        self.stderr.write(f"Created {kind} key {name!r} for {owner}. It will not be shown again:")
        self.stdout.write(raw)
