import sys

from django.core.management.base import BaseCommand, CommandError

from tenants.credentials import InvalidServiceAccount, set_credentials
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Store a tenant's Firebase service-account key (the JSON file from Firebase console > "
        "Project settings > Service accounts > Generate new private key). The private key is "
        "encrypted at rest. Use '-' to read the file from standard input."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's tenant_id")
        parser.add_argument("file", help="path to the service-account JSON, or - for stdin")

    def handle(self, *args, tenant, file, **options):
        try:
            owner = Tenant.objects.get(tenant_id=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with tenant_id {tenant!r}.") from None
        try:
            if file == "-":
                raw = sys.stdin.buffer.read()
            else:
                with open(file, "rb") as handle:
                    raw = handle.read()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        try:
            credential = set_credentials(tenant=owner, raw=raw)
        except InvalidServiceAccount as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Stored the service account {credential.client_email} (project "
            f"{credential.project_id}, key {credential.private_key_id or '?'}) for {owner}. "
            f"Check it with: manage.py check_fcm_credentials {owner.tenant_id}"
        )
