import getpass
import secrets
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.services import create_tenant


class Command(BaseCommand):
    help = (
        "Create a tenant (an app or customer) and, with --admin, its first tenant admin: a "
        "staff login that manages the tenant's keys, credentials and pushes in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant_id", help="the public identifier apps send as tenant_id")
        parser.add_argument("--name", required=True, help="the name staff see")
        parser.add_argument(
            "--language", default="en", help="default language, ISO 639-1 (default %(default)s)"
        )
        parser.add_argument(
            "--time-zone", default="UTC", help="default time zone, IANA (default %(default)s)"
        )
        parser.add_argument(
            "--admin",
            default="",
            metavar="USERNAME",
            help="make this user the tenant's admin; a new user is created (staff, "
            "not superuser) and asked for a password",
        )
        parser.add_argument("--admin-email", default="")
        parser.add_argument(
            "--no-input",
            action="store_true",
            help="never prompt: a new admin gets a generated password, shown once",
        )

    def handle(self, *args, tenant_id, name, language, time_zone, admin, admin_email, no_input, **options):
        password = ""
        if admin and not no_input and sys.stdin.isatty():
            password = self.ask_password(admin)
        generated = admin and not password
        if generated:
            password = secrets.token_urlsafe(12)
        try:
            tenant, new_admin = create_tenant(
                tenant_id=tenant_id,
                name=name,
                default_language=language,
                time_zone=time_zone,
                admin_username=admin,
                admin_email=admin_email,
                admin_password=password,
            )
        except ValidationError as exc:
            raise CommandError(self.describe(exc)) from None
        self.stdout.write(
            f"Created tenant {tenant} (language {tenant.default_language}, time zone {tenant.time_zone})."
        )
        if admin and not new_admin:
            self.stdout.write(f"Tenant admin: {admin} (an existing user; password unchanged)")
        elif admin:
            shown = (
                f"password: {password}  (shown once; change it after signing in)"
                if generated
                else "password: as entered"
            )
            self.stdout.write(f"Tenant admin: {admin}  {shown}")
        self.stdout.write(
            f'Next: manage.py create_api_key {tenant.tenant_id} --name "Android app" --kind app'
        )

    def ask_password(self, username: str) -> str:
        while True:
            first = getpass.getpass(f"Password for {username} (empty: generate one): ")
            if not first:
                return ""
            if first == getpass.getpass("Password (again): "):
                return first
            self.stderr.write("The passwords did not match.")

    @staticmethod
    def describe(exc: ValidationError) -> str:
        if hasattr(exc, "error_dict"):
            return " ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
        return " ".join(exc.messages)
