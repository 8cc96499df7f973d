import json

from django.core.management.base import BaseCommand, CommandError

from messaging.serializers import MessageCreateSerializer
from messaging.services import MessageInput, create_message
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Send (or schedule) a push from the command line, validated like POST /api/v1/messages."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's tenant_id")
        parser.add_argument("--title", required=True)
        parser.add_argument("--body", required=True)
        parser.add_argument(
            "--data", default="{}", help='JSON object of strings, e.g. \'{"deep_link": "x"}\''
        )
        parser.add_argument(
            "--audience",
            default='{"kind": "all"}',
            help='JSON, e.g. \'{"kind": "users", "app_user_ids": ["u1"]}\'',
        )
        parser.add_argument("--priority", type=int, default=5)
        parser.add_argument("--schedule-at", help="RFC 3339, e.g. 2026-12-01T09:00:00+03:00")
        parser.add_argument(
            "--notification",
            action="store_true",
            help="send an FCM notification message instead of data-only",
        )
        parser.add_argument("--dry-run", action="store_true", help="validate with FCM, deliver nothing")

    def handle(self, *args, **o):
        tenant = Tenant.objects.filter(tenant_id=o["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with tenant_id {o['tenant']!r}.")
        try:
            body = {
                "title": o["title"],
                "body": o["body"],
                "data": json.loads(o["data"]),
                "audience": json.loads(o["audience"]),
                "priority": o["priority"],
                "data_only": not o["notification"],
                "dry_run": o["dry_run"],
            }
        except json.JSONDecodeError as exc:
            raise CommandError(f"--data and --audience must be JSON: {exc}") from None
        if o["schedule_at"]:
            body["schedule_at"] = o["schedule_at"]
        serializer = MessageCreateSerializer(data=body)
        if not serializer.is_valid():
            raise CommandError(json.dumps(serializer.errors))
        data = dict(serializer.validated_data)
        audience = dict(data.pop("audience", {}) or {})
        spec = MessageInput(audience=audience.pop("kind", "all"), audience_params=audience, **data)
        message, _ = create_message(tenant=tenant, spec=spec, source="command")
        self.stdout.write(f"Message {message.pk}: {message.get_status_display()}.")
