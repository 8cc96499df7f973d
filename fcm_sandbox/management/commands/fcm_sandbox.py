from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fcm_sandbox.server import SandboxServer
from fcm_sandbox.state import state


class Command(BaseCommand):
    help = (
        "Run the FCM sandbox: Google's OAuth token endpoint and FCM HTTP v1 messages:send, "
        "plus a virtual-device inbox page. Point FCM_API_URL at it and give tenants "
        "credentials with `manage.py sandbox_credentials`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=9099, help="port to listen on (default 9099)")
        parser.add_argument("--latency-ms", type=int, default=0, help="added to every send")
        parser.add_argument(
            "--failure-rate",
            type=float,
            default=0.0,
            help="share of sends (0–1) answered 503 UNAVAILABLE or 500 INTERNAL at random",
        )
        parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds an access token lives")
        parser.add_argument("--seed", type=int, default=None, help="makes random failures repeatable")
        parser.add_argument("--quiet", action="store_true", help="do not log each request")
        parser.add_argument(
            "--db-connections",
            type=int,
            default=4,
            help="database connections the sandbox opens at most, however many clients send (default 4)",
        )

    def handle(
        self,
        *args,
        host,
        port,
        latency_ms,
        failure_rate,
        token_lifetime,
        seed,
        quiet,
        db_connections,
        **options,
    ):
        if not 0 <= failure_rate <= 1:
            raise CommandError("--failure-rate must be between 0 and 1.")
        if db_connections < 1:
            raise CommandError("--db-connections must be at least 1.")
        state.configure(
            latency_ms=latency_ms, failure_rate=failure_rate, token_lifetime=token_lifetime, seed=seed
        )
        server = SandboxServer(
            host=host, port=port, quiet=quiet, close_connections=False, db_connections=db_connections
        )
        try:
            server.bind()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
        self.stdout.write(
            f"FCM sandbox on {server.url}\n"
            f"  token endpoint   {server.token_url}\n"
            f"  messages:send    {server.url}/v1/projects/<project>/messages:send\n"
            f"  inbox            {server.url}/   (JSON: {server.url}/inbox.json?token=…)\n"
            f"Herald sends here when FCM_API_URL={server.url} "
            f"(now {settings.FCM_API_URL}).\n"
            "Give a tenant a credential it trusts: manage.py sandbox_credentials <tenant_id>\n"
            "Quit with CONTROL-C."
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop(wait=1)
