import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fcm_sandbox.accounts import provision_tenant
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Give a tenant a Firebase credential that the FCM sandbox trusts: a new RSA "
        "service-account key whose token_uri is the sandbox's, registered with the sandbox "
        "and stored (encrypted) as the tenant's credential."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's tenant_id")
        parser.add_argument(
            "--url",
            default=settings.FCM_SANDBOX_URL,
            help=f"the sandbox's base URL (default FCM_SANDBOX_URL, {settings.FCM_SANDBOX_URL})",
        )
        parser.add_argument("--project", default="", help="Firebase project ID (default sandbox-<tenant>)")
        parser.add_argument(
            "--write-json",
            metavar="PATH",
            default="",
            help="also save the service-account JSON there (for other clients such as firebase-admin)",
        )

    def handle(self, *args, tenant, url, project, write_json, **options):
        try:
            owner = Tenant.objects.get(tenant_id=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with tenant_id {tenant!r}.") from None
        credential, info = provision_tenant(tenant=owner, sandbox_url=url, project_id=project)
        if write_json:
            with open(write_json, "w") as file:
                json.dump(info, file, indent=2)
        self.stdout.write(
            f"{owner} now uses sandbox project {credential.project_id!r} as "
            f"{credential.client_email} (key {credential.private_key_id[:8]}…); "
            f"tokens from {credential.token_uri}."
        )
        if settings.FCM_API_URL.rstrip("/") != url.rstrip("/"):
            self.stderr.write(
                f"Note: FCM_API_URL is {settings.FCM_API_URL}; set FCM_API_URL={url} so that "
                "messages go to the sandbox too."
            )
