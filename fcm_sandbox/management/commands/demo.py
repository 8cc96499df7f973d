"""Run Herald with a demo tenant: web server, worker, herald_beat, the FCM sandbox and virtual devices."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from audiences.models import Segment
from audiences.services import create_segment
from fcm_sandbox.accounts import provision_tenant
from tenants.models import ApiKey, Membership, Tenant

DEMO_TENANT = "demo"
# The demo tenant's triggered campaign (issue 15): the simulator's cart_add events set it off.
CART_CAMPAIGN = "Cart abandoned, no purchase within 2 minutes"
# The demo tenant's segments (issue 14), built on the events the device simulator sends.
DEMO_SEGMENTS = {
    "bought over 50 in 14 days": {
        "include": [
            [
                {
                    "type": "event",
                    "event": "purchase",
                    "op": "did",
                    "within_days": 14,
                    "params": [{"param": "amount", "op": ">", "value": 50}],
                }
            ]
        ]
    },
    "dormant 7 days": {
        "include": [[{"type": "property", "property": "last_seen", "op": "not_within_days", "value": 7}]]
    },
    "Turkish speakers on Android": {
        "include": [
            [
                {"type": "property", "property": "language", "op": "in", "value": ["tr"]},
                {"type": "property", "property": "platform", "op": "in", "value": ["android"]},
            ]
        ]
    },
}


class Command(BaseCommand):
    help = "Set up a demo tenant with keys and an admin login, then run the web server and a worker."

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=int(os.environ.get("PORT", 8000)),
            help="Herald's web port (default %(default)s; PORT in the environment sets it)",
        )
        parser.add_argument(
            "--host", default="127.0.0.1", help="address every process listens on (default %(default)s)"
        )
        parser.add_argument(
            "--sandbox-port", type=int, default=9099, help="the FCM sandbox's port (default %(default)s)"
        )
        parser.add_argument("--setup-only", action="store_true", help="set up, print, and exit")
        parser.add_argument(
            "--devices",
            type=int,
            default=40,
            help="virtual apps the device simulator runs (default %(default)s; 0: none)",
        )

    def handle(self, *args, port, host, sandbox_port, setup_only, devices, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        sandbox_url = f"http://{host}:{sandbox_port}"
        # The demo tenant's token_uri is the sandbox's. The processes started below allow it
        # through FCM_SANDBOX_URL; this one, which uploads the key, is told here.
        if f"{sandbox_url}/token" not in settings.FCM_ALLOWED_TOKEN_URIS:
            settings.FCM_ALLOWED_TOKEN_URIS = [*settings.FCM_ALLOWED_TOKEN_URIS, f"{sandbox_url}/token"]
        app_key, server_key, password = self.set_up(sandbox_url=sandbox_url)
        base = f"http://{host}:{port}"
        self.print_welcome(
            base=base, app_key=app_key, server_key=server_key, password=password, sandbox_url=sandbox_url
        )
        if not setup_only:
            self.run_processes(
                host=host,
                port=port,
                sandbox_port=sandbox_port,
                sandbox_url=sandbox_url,
                app_key=app_key,
                server_key=server_key,
                devices=devices,
            )

    @transaction.atomic
    def set_up(self, *, sandbox_url: str) -> tuple[str, str, str]:
        tenant, _ = Tenant.objects.get_or_create(tenant_id=DEMO_TENANT, defaults={"name": "Demo App"})
        # The demo tenant's Firebase credential is a service account the sandbox issues,
        # so pushes really travel FCM's protocol, to the sandbox instead of Google.
        provision_tenant(tenant=tenant, sandbox_url=sandbox_url)
        # Keys are shown once, so each demo run issues fresh ones and retires the last.
        tenant.api_keys.filter(name__startswith="demo ", revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        _, app_key = ApiKey.generate(tenant=tenant, name="demo app key", kind=ApiKey.Kind.APP)
        _, server_key = ApiKey.generate(tenant=tenant, name="demo server key", kind=ApiKey.Kind.SERVER)

        password = os.environ.get("HERALD_DEMO_PASSWORD", "herald-demo")
        user, created = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save()
        Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": "admin"})
        self.ship_ab_message(tenant=tenant, user=user)
        self.ship_campaigns(tenant=tenant, user=user)
        for name, rules in DEMO_SEGMENTS.items():
            if not Segment.objects.filter(tenant=tenant, name=name).exists():
                create_segment(tenant=tenant, name=name, rules=rules, by=user)
        return app_key, server_key, password if created else "(unchanged since the first demo run)"

    def ship_ab_message(self, *, tenant, user) -> None:
        """One localized A/B message, scheduled a minute ahead so the virtual devices have
        registered by then: half the audience tests A and B, and 90 s later the better open
        rate goes to the rest, so the message page shows per-variant and per-language figures
        within a few minutes. Once per demo database."""
        from messaging.content import Content, VariantInput
        from messaging.models import Message
        from messaging.services import MessageInput, create_message

        title = "Weekend sale (A/B demo)"
        if Message.objects.filter(tenant=tenant, title=title).exists():
            return

        def localized(**texts):
            return {lang: Content(title=t, body=b) for lang, (t, b) in texts.items()}

        variants = [
            VariantInput(
                content=Content(title, "Everything 30 % off until Sunday."),
                localizations=localized(
                    tr=("Hafta sonu indirimi", "Pazar gününe kadar her şey %30 indirimli."),
                    de=("Wochenend-Sale", "Bis Sonntag alles 30 % günstiger."),
                    es=("Rebajas de fin de semana", "Todo con un 30 % de descuento hasta el domingo."),
                ),
            ),
            VariantInput(
                content=Content("30 % off, 48 hours only", "Your cart is waiting: ends Sunday."),
                localizations=localized(
                    tr=("%30 indirim, sadece 48 saat", "Sepetin seni bekliyor: indirim pazar bitiyor."),
                    de=("30 % Rabatt, nur 48 Stunden", "Dein Warenkorb wartet: der Sale endet Sonntag."),
                    es=("30 % de descuento, solo 48 horas", "Tu carrito te espera: termina el domingo."),
                ),
            ),
        ]
        create_message(
            tenant=tenant,
            created_by=user,
            source=Message.Source.ADMIN,
            spec=MessageInput(
                title=variants[0].content.title,
                body=variants[0].content.body,
                localizations=variants[0].localizations,
                variants=variants,
                variant_mode="ab_test",
                ab_test={"test_percent": 50, "wait_seconds": 90, "min_opens": 5},
                schedule_at=timezone.now() + timedelta(seconds=60),
            ),
        )

    def ship_campaigns(self, *, tenant, user) -> None:
        """Three active campaigns the virtual devices set off within a few minutes (once per
        demo database): a cart reminder triggered by cart_add unless purchase follows within
        2 minutes; a daily digest at a local time about 12 minutes from now in Istanbul (the
        first locale's users get it first, the rest as their clocks reach it); and a weekly
        A/B campaign due a few minutes from now, today, in the tenant's zone."""
        from campaigns import services as campaign_services
        from campaigns.models import Campaign

        now = timezone.now()
        # The scheduler plans a local-time campaign's waves for the zones its users are in,
        # and plans again every REPLAN_EVERY (10 minutes); the virtual users register after
        # this, so the Istanbul wave is planned at the second pass: 12 minutes leaves room.
        soon = (now + timedelta(minutes=12)).astimezone(ZoneInfo("Europe/Istanbul"))
        tenant_zone = ZoneInfo(tenant.time_zone or "UTC")
        weekly = (now + timedelta(minutes=4)).astimezone(tenant_zone)

        def content(*variants):
            return {
                "language": tenant.default_language,
                "variants": [
                    {
                        "title": title,
                        "body": body,
                        "localizations": {lang: {"title": t, "body": b} for lang, (t, b) in others.items()},
                    }
                    for title, body, others in variants
                ],
            }

        campaigns = {
            CART_CAMPAIGN: {
                "kind": "triggered",
                "trigger_event": "cart_add",
                "delay_seconds": 120,
                "cancel_event": "purchase",
                "cooldown": "1h",
                "content": content(
                    (
                        "You left something in your cart",
                        "It is still there, waiting for you.",
                        {"tr": ("Sepetinde ürün kaldı", "Hâlâ orada, seni bekliyor.")},
                    ),
                    (
                        "Still thinking it over?",
                        "Your cart is saved: finish in one tap.",
                        {"tr": ("Hâlâ düşünüyor musun?", "Sepetin kayıtlı: tek dokunuşla bitir.")},
                    ),
                ),
            },
            "Daily digest (local time)": {
                "kind": "scheduled",
                "schedule_kind": "daily",
                "send_time": soon.time().replace(second=0, microsecond=0),
                "zone_mode": "local",
                "cooldown": "1d",
                "content": content(
                    (
                        "Today's picks",
                        "Five things we think you will like.",
                        {"tr": ("Bugünün seçkileri", "Seveceğini düşündüğümüz beş şey.")},
                    )
                ),
            },
            "Weekly deals (A/B)": {
                "kind": "scheduled",
                "schedule_kind": "weekly",
                "weekdays": [weekly.weekday()],
                "send_time": weekly.time().replace(second=0, microsecond=0),
                "zone_mode": "global",
                "zone": "",
                "cooldown": "1w",
                "content_mode": "ab_test",
                "ab_test": {"test_percent": 50, "wait_seconds": 120, "min_opens": 5},
                "content": content(
                    ("This week's deals", "Up to 40 % off all week.", {}),
                    ("40 % off, this week only", "Deals end Sunday night.", {}),
                ),
            },
        }
        for name, fields in campaigns.items():
            if Campaign.objects.filter(tenant=tenant, name=name).exists():
                continue
            campaign = campaign_services.create_campaign(
                tenant=tenant, fields={"name": name, **fields}, created_by=user
            )
            campaign_services.activate(campaign)

    def print_welcome(self, *, base, app_key, server_key, password, sandbox_url):
        w = self.stdout.write
        w(self.style.SUCCESS("\nHerald demo is set up.\n"))
        w(f"  Admin:        {base}/admin/   user: admin   password: {password}")
        w(f"  API docs:     {base}/api/docs/")
        w(f"  FCM sandbox:  {sandbox_url}/  (what the virtual devices received)")
        w(f"  tenant_id:    {DEMO_TENANT}")
        w(f"  App key:      {app_key}")
        w(f"  Server key:   {server_key}")
        w("\nRegister a device:\n")
        w(f"""  curl -s {base}/events -H 'Content-Type: application/json' -d '{{
    "tenant_id": "{DEMO_TENANT}", "api_key": "{app_key}",
    "app_user_id": "user_123", "event_name": "app_opened",
    "event_time": "2026-11-23T10:15:00+03:00", "device_token": "demo-token-1",
    "platform": "android", "push_permission_granted": true,
    "timezone": "Europe/Istanbul", "language": "tr", "country": "TR",
    "session_id": "sess-1", "params": {{"screen": "home"}}}}'
""")
        w("Send it a push from a back end:\n")
        w(f"""  curl -s {base}/developer/push -H 'Content-Type: application/json' \\
    -H 'X-Server-Key: {server_key}' \\
    -d '{{"app_user_id": "user_123", "title": "Hello", "body": "From Herald"}}'
""")
        w("Rotate its token:\n")
        w(f"""  curl -s {base}/devices/refresh-token -H 'Content-Type: application/json' -d '{{
    "tenant_id": "{DEMO_TENANT}", "api_key": "{app_key}",
    "old_token": "demo-token-1", "new_token": "demo-token-2", "platform": "android"}}'
""")

    def run_processes(self, *, host, port, sandbox_port, sandbox_url, app_key, server_key, devices):
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {
            "sandbox": [*manage, "fcm_sandbox", "--host", host, "--port", str(sandbox_port), "--quiet"],
            "web": [*manage, "runserver", f"{host}:{port}", "--noreload"],
            "worker": [*manage, "db_worker", "--queue-name", "default,webhooks"]
            if settings.TASK_BACKEND == "database"
            else [
                *manage,
                "rqworker",
                "--job-class",
                "django_tasks_rq.Job",
                "--with-scheduler",
                "default",
                "webhooks",
            ],
            "beat": [*manage, "herald_beat"],
        }
        if devices:
            # Virtual apps over HTTP, and a virtual back end pushing to them, so the dashboard
            # shows devices, rotations, deliveries and opens within a minute. They stop by
            # themselves after an hour; the demo carries on without them.
            local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            commands["devices"] = [
                *manage,
                "simulate_devices",
                "--tenant",
                DEMO_TENANT,
                "--devices",
                str(devices),
                "--base-url",
                f"http://{local}:{port}",
                "--sandbox-url",
                f"http://{local}:{sandbox_port}",
                "--app-key",
                app_key,
                "--server-key",
                server_key,
                "--duration",
                "3600",
                "--ramp-up",
                "10",
                "--push-every",
                "5",
                "--campaign-every",
                "60",
                "--wait",
                "60",
            ]
        optional = {"devices"}  # may finish on its own without stopping the demo
        # Every process sends to the sandbox, not to Google; the virtual devices all come
        # from this machine's address, so its per-IP limit is raised for the demo.
        env = {
            "RATE_LIMIT_PER_IP": "100000/min",
            **os.environ,
            "FCM_API_URL": sandbox_url,
            "FCM_SANDBOX_URL": sandbox_url,
        }
        children = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
        self.stdout.write(f"Running {', '.join(children)}. Press Ctrl-C to stop.\n")

        def stop(*_):
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(child.poll() is None for name, child in children.items() if name not in optional):
                time.sleep(0.5)
            dead = [
                name for name, child in children.items() if name not in optional and child.poll() is not None
            ]
            self.stderr.write(f"{', '.join(dead)} stopped; shutting the demo down.")
        except KeyboardInterrupt:
            pass
        stop()
