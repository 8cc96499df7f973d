"""The simulator's shoppers: purchases follow carts, and some carts are abandoned, so the demo's
"cart abandoned, no purchase within 2 minutes" campaign has something to fire on."""

import random
from types import SimpleNamespace

from fcm_sandbox.simulator import SimulatorConfig, Stats, VirtualDevice


class RecordingTransport:
    def __init__(self, clock):
        self.clock, self.events = clock, []

    def post(self, path, body, **kwargs):
        if path == "/events":
            self.events.append((self.clock(), body["event_name"]))
        return SimpleNamespace(status_code=200, json=lambda: {})

    def inbox(self, **kwargs):
        return []


def shopper(seed: int):
    now = [0.0]
    transport = RecordingTransport(lambda: now[0])
    config = SimulatorConfig(
        base_url="http://127.0.0.1:1",
        tenant_id="demo",
        app_key="k",
        sandbox_url="http://127.0.0.1:2",
        event_chance=1.0,
        rotate_chance=0,
        reinstall_chance=0,
        grant_later_chance=0,
    )
    device = VirtualDevice(
        number=seed,
        run_id="t",
        config=config,
        transport=transport,
        stats=Stats(),
        rng=random.Random(seed),
        anonymous=False,
        denied=False,
        clock=lambda: now[0],
    )
    for _ in range(600):  # 20 minutes of 2-second ticks
        device.step()
        now[0] += 2.0
    return transport.events


def test_every_purchase_follows_a_cart_add_within_90_seconds():
    for seed in range(5):
        events = shopper(seed)
        for at, name in events:
            if name == "purchase":
                carts = [t for t, n in events if n == "cart_add" and t <= at]
                assert any(30 <= at - t <= 92 for t in carts)


def test_some_carts_are_abandoned_and_some_bought():
    abandoned = bought = 0
    for seed in range(5):
        events = shopper(seed)
        purchases = [t for t, n in events if n == "purchase"]
        for at, name in events:
            if name != "cart_add" or at > events[-1][0] - 120:
                continue
            if any(at < t <= at + 120 for t in purchases):
                bought += 1
            else:
                abandoned += 1

    assert abandoned > 0 and bought > 0
