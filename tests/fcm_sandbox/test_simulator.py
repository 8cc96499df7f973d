"""The device simulator: virtual apps against a live Herald and the FCM sandbox, over real HTTP."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from devices.models import AppUser, Device, TokenRotation
from fcm_sandbox.simulator import Simulator, SimulatorConfig, check_url
from messaging.models import Message


@pytest.fixture
def fleet(live_server, sandbox, tenant, app_key):
    """Make a Simulator against the live server and the sandbox; quiet, quick, repeatable."""
    made = []

    def fleet(**options) -> Simulator:
        settings = {
            "seed": 8,
            "tick": 0.1,
            "ramp_up": 0,
            "open_delay": 0,
            "rotate_chance": 0,
            "reinstall_chance": 0,
            "grant_later_chance": 0,
            **options,
        }
        simulator = Simulator(
            SimulatorConfig(
                base_url=live_server.url,
                tenant_id=tenant.tenant_id,
                app_key=app_key,
                sandbox_url=sandbox.url,
                **settings,
            )
        )
        made.append(simulator)
        return simulator

    yield fleet
    for simulator in made:
        simulator.close()


def registered(simulator):
    return lambda: all(d.registered for d in simulator.devices)


def test_virtual_devices_register_rotate_and_report_opens_of_what_they_received(fleet, server, tenant):
    sim = fleet(
        devices=12, rotate_chance=0.3, event_chance=0.5, open_rate=1.0, anonymous_share=0.2, denied_share=0.15
    )

    sim.run(20, until=lambda: registered(sim)() and sim.stats["rotations"] >= 3)

    devices = Device.objects.filter(tenant=tenant)
    assert devices.count() == 12
    assert {d.fcm_token for d in sim.devices} == set(devices.values_list("token", flat=True))
    assert TokenRotation.objects.filter(device__tenant=tenant).count() == sim.stats["rotations"] >= 3
    assert AppUser.objects.filter(tenant=tenant, is_anonymous=True).count() == 2
    assert devices.filter(push_permission=False).count() == 2
    assert devices.values("platform").distinct().count() >= 2
    assert AppUser.objects.filter(tenant=tenant).values("country").distinct().count() >= 3

    response = server.post("/api/v1/messages", {"title": "Weekend sale", "body": "20% off"}, format="json")
    message = Message.objects.get(pk=response.json()["id"])
    assert message.sent_count == 10  # the two devices without permission get nothing

    sim.run(20, until=lambda: sim.stats["opens_reported"] >= 10)

    message.refresh_from_db()
    assert sim.stats["pushes_received"] == 10
    assert message.opened_count == 10
    assert message.open_rate == 1.0


def test_only_some_received_pushes_are_opened_at_a_lower_open_rate(fleet, server):
    sim = fleet(devices=20, open_rate=0.3, anonymous_share=0, denied_share=0)
    sim.run(20, until=registered(sim))
    message_id = server.post("/api/v1/messages", {"title": "Hi", "body": "There"}, format="json").json()["id"]

    sim.run(20, until=lambda: sim.stats["pushes_received"] >= 20)
    sim.run(0.3)  # taps are reported on the device's next tick

    message = Message.objects.get(pk=message_id)
    assert 0 < message.opened_count < 20
    assert message.opened_count == sim.stats["opens_reported"]


def test_a_refresh_answered_404_registers_the_new_token_with_an_event(fleet, tenant):
    sim = fleet(devices=1, anonymous_share=0, denied_share=0)
    sim.run(20, until=registered(sim))
    device = sim.devices[0]
    Device.objects.filter(tenant=tenant).delete()  # Herald forgot the device

    device.rotate_token()

    assert sim.stats["refresh_not_found"] == 1
    assert Device.objects.get(tenant=tenant).token == device.fcm_token
    assert device.stored_token == device.fcm_token


def test_a_refresh_answered_409_registers_the_new_token_for_the_current_user(fleet, tenant):
    sim = fleet(devices=2, anonymous_share=0, denied_share=0)
    sim.run(20, until=registered(sim))
    first, second = sim.devices
    second.fcm_token = first.fcm_token  # the new token is on another user's device

    second.sync_token()

    assert sim.stats["refresh_conflicts"] == 1
    assert Device.objects.get(tenant=tenant, token=first.fcm_token).user.app_user_id == second.app_user_id
    assert second.stored_token == first.fcm_token


def test_a_reinstall_registers_a_new_device_without_a_refresh(fleet, tenant):
    sim = fleet(devices=1, anonymous_share=0, denied_share=0)
    sim.run(20, until=registered(sim))
    device = sim.devices[0]
    before = device.fcm_token

    device.reinstall()

    tokens = set(Device.objects.filter(tenant=tenant).values_list("token", flat=True))
    assert tokens == {before, device.fcm_token}
    assert TokenRotation.objects.count() == 0
    assert sim.stats["reinstalls"] == 1


def test_a_user_who_grants_permission_later_starts_receiving(fleet, tenant):
    sim = fleet(devices=1, anonymous_share=0, denied_share=1)
    sim.run(20, until=registered(sim))
    assert Device.objects.get(tenant=tenant).push_permission is False

    sim.devices[0].grant_permission()

    assert Device.objects.get(tenant=tenant).push_permission is True


def test_the_virtual_back_end_sends_pushes_and_campaigns_that_get_opened(fleet, server_key):
    sim = fleet(
        devices=6,
        server_key=server_key,
        push_every=0.2,
        campaign_every=0.5,
        open_rate=1.0,
        anonymous_share=0,
        denied_share=0,
    )

    sim.run(
        20,
        until=lambda: (
            sim.stats["campaigns"] >= 1
            and sim.stats["developer_pushes"] >= 1
            and sim.stats["opens_reported"] >= 7
        ),
    )

    assert Message.objects.filter(source=Message.Source.DEVELOPER_PUSH).exists()
    assert Message.objects.filter(source=Message.Source.API).exists()
    assert sum(Message.objects.values_list("opened_count", flat=True)) == sim.stats["opens_reported"] >= 7


def test_it_stops_when_its_request_budget_is_spent(fleet):
    sim = fleet(devices=5, max_requests=7)

    sim.run(20)

    assert sim.stop_reason == "request budget"
    assert sim.transport.sent == 7
    assert sim.elapsed < 10


def test_it_stops_at_once_when_herald_refuses_the_app_key(live_server, sandbox, tenant):
    sim = Simulator(
        SimulatorConfig(
            base_url=live_server.url,
            tenant_id=tenant.tenant_id,
            app_key="wrong",
            sandbox_url=sandbox.url,
            devices=3,
            ramp_up=0,
            tick=0.1,
        )
    )

    sim.run(20)
    sim.close()

    assert sim.stop_reason == "unauthorized"
    assert sim.elapsed < 10


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.0.0.1:8000",
        "ftp://127.0.0.1/",
        "http://127.0.0.1:8000/?x=1",
        "127.0.0.1:8000",
    ],
)
def test_it_refuses_urls_that_are_not_on_this_machine(url):
    with pytest.raises(ValueError):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/",
        "http://localhost:8000",
        "http://[::1]:9099",
        "https://127.0.0.2",
        "http://0.0.0.0:8000",
    ],
)
def test_it_accepts_loopback_urls(url):
    assert check_url(url) == url.rstrip("/")


def test_remote_urls_need_to_be_allowed():
    assert check_url("https://push.example.com", allow_remote=True) == "https://push.example.com"


def test_the_command_runs_the_fleet_and_prints_a_summary(live_server, sandbox, tenant, app_key):
    out = io.StringIO()

    call_command(
        "simulate_devices",
        "--base-url",
        live_server.url,
        "--tenant",
        tenant.tenant_id,
        "--app-key",
        app_key,
        "--sandbox-url",
        sandbox.url,
        "--devices",
        "4",
        "--duration",
        "1.5",
        "--tick",
        "0.2",
        "--ramp-up",
        "0",
        "--seed",
        "3",
        "--wait",
        "5",
        "--reinstall-chance",
        "0",
        stdout=out,
    )

    assert "devices registered   4/4" in out.getvalue()
    assert Device.objects.filter(tenant=tenant).count() == 4


def test_the_command_prints_json_when_asked(live_server, sandbox, tenant, app_key):
    out = io.StringIO()

    call_command(
        "simulate_devices",
        "--base-url",
        live_server.url,
        "--tenant",
        tenant.tenant_id,
        "--app-key",
        app_key,
        "--sandbox-url",
        sandbox.url,
        "--devices",
        "2",
        "--duration",
        "1",
        "--tick",
        "0.2",
        "--ramp-up",
        "0",
        "--json",
        stdout=out,
    )

    summary = json.loads(out.getvalue())
    assert summary["devices"]["registered"] == 2
    assert summary["stopped_by"] == "duration"


def test_the_command_refuses_a_remote_url(db):
    with pytest.raises(CommandError, match="not on this machine"):
        call_command(
            "simulate_devices",
            "--base-url",
            "http://example.com",
            "--tenant",
            "acme",
            "--app-key",
            "k",
            "--sandbox-url",
            "http://127.0.0.1:9099",
        )


def test_the_command_fails_when_herald_refuses_the_key(live_server, sandbox, tenant):
    with pytest.raises(CommandError, match="refused"):
        call_command(
            "simulate_devices",
            "--base-url",
            live_server.url,
            "--tenant",
            tenant.tenant_id,
            "--app-key",
            "wrong",
            "--sandbox-url",
            sandbox.url,
            "--devices",
            "2",
            "--duration",
            "5",
            "--ramp-up",
            "0",
            "--tick",
            "0.1",
            stdout=io.StringIO(),
        )


def test_waiting_for_herald_logs_no_api_error(fleet, caplog):
    simulator = fleet(devices=1)

    with caplog.at_level("INFO"):
        assert simulator.wait_until_reachable(10)

    assert [r.getMessage() for r in caplog.records if r.name in ("herald.api", "django.request")] == []
