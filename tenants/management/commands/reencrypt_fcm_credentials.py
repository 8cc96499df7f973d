from django.core.management.base import BaseCommand

from tenants.credentials import reencrypt_credentials


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored Firebase private key with the first of HERALD_ENCRYPTION_KEYS "
        "(run after putting a new key in front; then the old key can be dropped)."
    )

    def handle(self, *args, **options):
        count = reencrypt_credentials()
        self.stdout.write(f"Re-encrypted {count} credential(s) with the current key.")
