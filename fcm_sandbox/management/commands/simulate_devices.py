"""Virtual apps for a running Herald and FCM sandbox: see fcm_sandbox/simulator.py."""

import contextlib
import json
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fcm_sandbox.simulator import Simulator, SimulatorConfig


class Command(BaseCommand):
    help = (
        "Run N virtual apps against Herald over HTTP: they register through /events, rotate "
        "tokens through /devices/refresh-token, read what they received from the FCM sandbox "
        "and report opens through /pushes/opened. Stops after --duration seconds."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Herald's URL.")
        parser.add_argument("--tenant", required=True, help="The tenant_id the apps send.")
        parser.add_argument("--app-key", required=True, help="An app key of that tenant.")
        parser.add_argument(
            "--sandbox-url",
            default=settings.FCM_SANDBOX_URL,
            help="The FCM sandbox whose inbox the devices read (default %(default)s).",
        )
        parser.add_argument("--devices", type=int, default=20, help="How many virtual apps (default 20).")
        parser.add_argument(
            "--duration", type=float, default=60.0, help="Seconds to run before stopping (default 60)."
        )
        parser.add_argument(
            "--max-requests",
            type=int,
            default=50_000,
            help="Stop after this many HTTP requests (default 50000).",
        )
        parser.add_argument(
            "--server-key",
            default="",
            help="Also play the app's back end: /developer/push to a user every "
            "--push-every seconds and a campaign every --campaign-every seconds.",
        )
        parser.add_argument("--push-every", type=float, default=10.0)
        parser.add_argument("--campaign-every", type=float, default=30.0)
        parser.add_argument(
            "--tick", type=float, default=2.0, help="Seconds between a device's actions (default 2)."
        )
        parser.add_argument(
            "--ramp-up",
            type=float,
            default=5.0,
            help="Registrations spread over this many seconds (default 5).",
        )
        parser.add_argument(
            "--open-rate",
            type=float,
            default=0.35,
            help="Share of received pushes the user taps (default 0.35).",
        )
        parser.add_argument(
            "--open-delay", type=float, default=5.0, help="Longest wait in seconds before a tap (default 5)."
        )
        parser.add_argument(
            "--rotate-chance",
            type=float,
            default=0.02,
            help="Chance per device and tick that Firebase rotates the token (default 0.02).",
        )
        parser.add_argument("--reinstall-chance", type=float, default=0.004)
        parser.add_argument("--event-chance", type=float, default=0.3)
        parser.add_argument(
            "--anonymous-share",
            type=float,
            default=0.2,
            help="Share of devices without app_user_id (default 0.2).",
        )
        parser.add_argument(
            "--denied-share",
            type=float,
            default=0.15,
            help="Share of devices whose user denies push permission (default 0.15).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed for a repeatable fleet.")
        parser.add_argument("--workers", type=int, default=4, help="Devices acting at once (default 4).")
        parser.add_argument(
            "--wait",
            type=float,
            default=15.0,
            help="Seconds to wait for Herald and the sandbox to answer first (default 15).",
        )
        parser.add_argument(
            "--allow-remote", action="store_true", help="Allow URLs that are not on this machine."
        )
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")

    def handle(self, *args, **o):
        try:
            config = SimulatorConfig(
                base_url=o["base_url"],
                tenant_id=o["tenant"],
                app_key=o["app_key"],
                sandbox_url=o["sandbox_url"],
                devices=o["devices"],
                seed=o["seed"],
                tick=o["tick"],
                ramp_up=o["ramp_up"],
                event_chance=o["event_chance"],
                rotate_chance=o["rotate_chance"],
                reinstall_chance=o["reinstall_chance"],
                anonymous_share=o["anonymous_share"],
                denied_share=o["denied_share"],
                open_rate=o["open_rate"],
                open_delay=o["open_delay"],
                server_key=o["server_key"],
                push_every=o["push_every"],
                campaign_every=o["campaign_every"],
                max_requests=o["max_requests"],
                workers=o["workers"],
                allow_remote=o["allow_remote"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if o["duration"] <= 0:
            raise CommandError("--duration must be positive.")

        quiet = o["json"] or o["verbosity"] < 1
        simulator = Simulator(config, progress=None if quiet else self.stdout.write)
        try:
            if not simulator.wait_until_reachable(o["wait"]):
                raise CommandError(
                    f"Herald ({config.base_url}) or the sandbox ({config.sandbox_url}) "
                    f"did not answer within {o['wait']:g}s."
                )
            if not quiet:
                self.stdout.write(
                    f"Simulating {config.devices} devices for {o['duration']:g}s against "
                    f"{config.base_url} (sandbox {config.sandbox_url}). Ctrl-C stops early."
                )
            with sigterm_as_interrupt():
                try:
                    simulator.run(o["duration"])
                except KeyboardInterrupt:
                    simulator.stop_reason = "interrupt"
        finally:
            simulator.close()

        if o["json"]:
            self.stdout.write(json.dumps(simulator.summary(), indent=2))
        else:
            self.stdout.write("\n".join(simulator.summary_lines()))
        if simulator.stop_reason == "unauthorized":
            raise CommandError(f"Herald refused tenant {config.tenant_id!r} with this app key (401).")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (the demo stopping its children) ends the run like Ctrl-C: with a summary."""
    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
