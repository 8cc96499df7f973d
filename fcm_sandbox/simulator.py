"""Virtual apps that use Herald over real HTTP, as docs/integration tells a real app to.

Each VirtualDevice is one app install: it registers through ``POST /events``, sends
more events now and then, rotates its FCM token through ``POST /devices/refresh-token``
(re-registering when Herald answers 404 or 409), is reinstalled now and then, reads
what it "received" from the FCM sandbox's ``/inbox.json``, and reports opens for some
of those pushes through ``POST /pushes/opened`` with the ``tracking_token`` in the data.

An optional VirtualBackend plays the app's server: with a server key it sends
``POST /developer/push`` to a user now and then and a campaign through
``POST /api/v1/messages``, so a demo fills up with deliveries and opens by itself.

The simulator talks only to the two URLs it is given, and by default only if they are
on this machine; it stops at its deadline or when its request budget is spent.
"""

import base64
import ipaddress
import logging
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests

log = logging.getLogger("herald.simulator")

# (country, language, IANA time zone): a spread of offsets, scripts and hemispheres.
LOCALES = [
    ("TR", "tr", "Europe/Istanbul"),
    ("US", "en", "America/New_York"),
    ("US", "es", "America/Los_Angeles"),
    ("GB", "en", "Europe/London"),
    ("DE", "de", "Europe/Berlin"),
    ("FR", "fr", "Europe/Paris"),
    ("BR", "pt", "America/Sao_Paulo"),
    ("MX", "es", "America/Mexico_City"),
    ("IN", "hi", "Asia/Kolkata"),
    ("JP", "ja", "Asia/Tokyo"),
    ("KR", "ko", "Asia/Seoul"),
    ("ID", "id", "Asia/Jakarta"),
    ("NG", "en", "Africa/Lagos"),
    ("EG", "ar", "Africa/Cairo"),
    ("AU", "en", "Australia/Sydney"),
    ("NP", "ne", "Asia/Kathmandu"),
]
PLATFORMS = ["android", "ios", "web"]
PLATFORM_WEIGHTS = [55, 35, 10]
EVENTS: list[tuple[str, Callable[[random.Random], dict]]] = [
    ("screen_viewed", lambda rng: {"screen": rng.choice(["home", "search", "product", "cart", "profile"])}),
    ("search", lambda rng: {"query": rng.choice(["shoes", "coffee", "headphones", "tent"])}),
    ("app_open", lambda rng: {"source": rng.choice(["launcher", "push", "deep_link"])}),
    (
        "cart_add",
        lambda rng: {
            "sku": f"SKU-{rng.randint(100, 999)}",
            "quantity": rng.randint(1, 3),
            "price": round(rng.uniform(3, 120), 2),
        },
    ),
    (
        "purchase",
        lambda rng: {
            "amount": round(rng.uniform(5, 250), 2),
            "items": rng.randint(1, 5),
            "currency": rng.choice(["EUR", "TRY", "USD"]),
        },
    ),
    (
        "level_complete",
        lambda rng: {
            "level": rng.randint(1, 40),
            "score": rng.randint(100, 9000),
            "stars": rng.randint(1, 3),
        },
    ),
]
# Purchases follow a cart (Device.step), so that some carts are abandoned: the demo's
# "cart abandoned, no purchase within 2 minutes" campaign has something to remind of.
PURCHASE = dict(EVENTS)["purchase"]
BROWSING = [(name, params) for name, params in EVENTS if name != "purchase"]
BUY_CHANCE = 0.5
# What the virtual back end sends to one user: (title, body, extra_data).
PUSHES = [
    ("Your order has shipped", "Track it in the app.", {"deep_link": "shop://orders/latest"}),
    ("Back in stock", "The item on your wishlist is available again.", {"deep_link": "shop://wishlist"}),
    (
        "You left something in your cart",
        "Complete your order before it sells out.",
        {"deep_link": "shop://cart"},
    ),
    ("Your receipt", "Thanks for your purchase!", {"deep_link": "shop://orders/receipt"}),
]
CAMPAIGNS = [
    ("Weekend sale", "20% off everything until Sunday."),
    ("New arrivals", "Fresh picks for the season are in."),
    ("Free shipping today", "On every order, no minimum."),
]


# --- Where the simulator may go ------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether a URL host names this machine (localhost, 127.0.0.0/8, ::1, or 0.0.0.0 / ::)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # connecting to 0.0.0.0 reaches this host


def check_url(url: str, *, allow_remote: bool = False) -> str:
    """The URL without a trailing slash; ValueError unless it is http(s) on this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL.")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} must not have a query or fragment.")
    if not allow_remote and not is_loopback(parts.hostname):
        raise ValueError(
            f"{url!r} is not on this machine; the simulator only talks to loopback addresses "
            "unless told to allow remote ones."
        )
    return url.rstrip("/")


# --- Configuration, counters, HTTP ----------------------------------------------------


@dataclass(kw_only=True)
class SimulatorConfig:
    base_url: str
    tenant_id: str
    app_key: str
    sandbox_url: str
    devices: int = 20
    seed: int | None = None
    # Each device acts once a tick (with ±25% jitter); registration spreads over ramp_up.
    tick: float = 2.0
    ramp_up: float = 5.0
    # Chances per device and tick.
    event_chance: float = 0.3
    rotate_chance: float = 0.02
    reinstall_chance: float = 0.004
    grant_later_chance: float = 0.02
    # Shares of the fleet, fixed when the devices are made.
    anonymous_share: float = 0.2
    denied_share: float = 0.15
    # Share of received pushes the user taps, and the longest wait before the tap.
    open_rate: float = 0.35
    open_delay: float = 5.0
    # The virtual back end: off without a server key.
    server_key: str = ""
    push_every: float = 10.0
    campaign_every: float = 30.0
    max_requests: int = 50_000
    timeout: float = 10.0
    workers: int = 4
    allow_remote: bool = False

    def __post_init__(self):
        self.base_url = check_url(self.base_url, allow_remote=self.allow_remote)
        self.sandbox_url = check_url(self.sandbox_url, allow_remote=self.allow_remote)
        if self.devices < 1:
            raise ValueError("devices must be at least 1.")
        if self.max_requests < 1:
            raise ValueError("max_requests must be at least 1.")
        for name in (
            "event_chance",
            "rotate_chance",
            "reinstall_chance",
            "grant_later_chance",
            "anonymous_share",
            "denied_share",
            "open_rate",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1.")
        if self.tick <= 0 or self.workers < 1:
            raise ValueError("tick must be positive and workers at least 1.")


class Stats:
    """Thread-safe counters: what the fleet did, and every answer by endpoint and status."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.responses: Counter[tuple[str, str]] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def answered(self, path: str, status: str) -> None:
        with self._lock:
            self.responses[(path, status)] += 1

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "counts": dict(sorted(self.counts.items())),
                "responses": {f"{path} {status}": n for (path, status), n in sorted(self.responses.items())},
            }


class BudgetExhausted(Exception):
    """The simulator has made as many requests as it was allowed."""


class Transport:
    """HTTP to Herald and to the sandbox, and nowhere else, within a request budget.

    One keep-alive session per thread; no proxies from the environment, no redirects
    followed (either could take a request somewhere it was not told to go).
    """

    def __init__(self, *, base_url: str, sandbox_url: str, max_requests: int, timeout: float, stats: Stats):
        self.base_url, self.sandbox_url = base_url, sandbox_url
        self.max_requests, self.timeout, self.stats = max_requests, timeout, stats
        self.sent = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _spend(self) -> None:
        with self._lock:
            if self.sent >= self.max_requests:
                raise BudgetExhausted
            self.sent += 1

    def _request(self, method: str, url: str, label: str, **kwargs) -> requests.Response | None:
        self._spend()
        try:
            response = self._session().request(
                method, url, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            log.debug("%s %s failed: %s", method, url, exc)
            self.stats.answered(label, "network error")
            return None
        self.stats.answered(label, str(response.status_code))
        return response

    def post(self, path: str, body: dict, *, headers: dict | None = None) -> requests.Response | None:
        """POST a JSON body to Herald; None when Herald could not be reached."""
        return self._request("POST", f"{self.base_url}{path}", f"POST {path}", json=body, headers=headers)

    def inbox(self, *, token: str, after: int) -> list[dict] | None:
        """New messages the sandbox holds for a token (oldest first); None on failure."""
        response = self._request(
            "GET",
            f"{self.sandbox_url}/inbox.json",
            "GET sandbox /inbox.json",
            params={"token": token, "after": after, "limit": 100},
        )
        if response is None or response.status_code != 200:
            return None
        return response.json().get("messages", [])

    def reachable(self, url: str) -> bool:
        """Whether anything answers at a URL (any HTTP status will do); not counted."""
        try:
            self._session().get(url, timeout=2, allow_redirects=False)
        except requests.RequestException:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def fcm_like_token(rng: random.Random) -> str:
    """A token shaped like FCM's: an instance id, ':APA91b', and a long base64url tail."""

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(rng.randbytes(n)).decode().rstrip("=")

    return f"{b64(16)}:APA91b{b64(100)}"


# --- One app install ------------------------------------------------------------------


@dataclass
class PendingOpen:
    tracking_token: str
    due: float
    attempts: int = 0


class VirtualDevice:
    """One app install on one phone or browser, behaving as docs/integration says an app should.

    ``fcm_token`` is what Firebase currently gives the app; ``stored_token`` is what the
    app last told Herald (SharedPreferences / UserDefaults / localStorage: gone after a
    reinstall). Whenever they differ, ``sync_token`` puts Herald right.
    """

    def __init__(
        self,
        *,
        number: int,
        run_id: str,
        config: SimulatorConfig,
        transport: Transport,
        stats: Stats,
        rng: random.Random,
        anonymous: bool,
        denied: bool,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.number, self.config, self.transport, self.stats, self.rng = number, config, transport, stats, rng
        self.clock = clock
        self.platform = rng.choices(PLATFORMS, PLATFORM_WEIGHTS)[0]
        self.country, self.language, self.timezone = rng.choice(LOCALES)
        self.app_user_id = "" if anonymous else f"sim-{run_id}-{number:04d}"
        self.push_permission = not denied
        self.fcm_token = fcm_like_token(rng)
        self.stored_token: str | None = None
        self.session_id = ""
        self.registered = False
        self.inbox_cursor = 0
        self.pending_opens: list[PendingOpen] = []
        self.next_tick = 0.0
        self.unauthorized = False
        # A cart: opened by cart_add; about half the shoppers buy 30–90 s later (purchase),
        # the rest abandon it, which the demo's cart campaign reminds them of.
        self.cart_buy_at: float | None = None

    def __repr__(self) -> str:
        who = self.app_user_id or "anonymous"
        return f"<VirtualDevice {self.number} {self.platform} {self.country} {who}>"

    # The requests, as the guides write them.

    def _credentials(self) -> dict:
        return {"tenant_id": self.config.tenant_id, "api_key": self.config.app_key}

    def event_body(self, name: str, params: dict | None = None) -> dict:
        body = {
            **self._credentials(),
            "event_name": name,
            "event_time": datetime.now(ZoneInfo(self.timezone)).isoformat(timespec="seconds"),
            "device_token": self.fcm_token,
            "platform": self.platform,
            "push_permission_granted": self.push_permission,
            "timezone": self.timezone,
            "language": self.language,
            "country": self.country,
            "session_id": self.session_id,
            "params": params or {},
        }
        if self.app_user_id:
            body["app_user_id"] = self.app_user_id
        return body

    def send_event(self, name: str, params: dict | None = None) -> bool:
        """POST /events; on 200 Herald has this token, so the app stores it."""
        token = self.fcm_token
        response = self.transport.post("/events", self.event_body(name, params))
        if response is None or response.status_code != 200:
            if response is not None and response.status_code == 401:
                self.unauthorized = True
            self.stats.add("event_failures")
            return False
        self.stats.add("events")
        if not self.registered:
            self.registered = True
            self.stats.add("registered")
        self.stored_token = token
        return True

    def sync_token(self) -> None:
        """Tell Herald about the current token if it is not the one Herald has."""
        old, new = self.stored_token, self.fcm_token
        if old == new:
            return
        if old is None:  # fresh install or reinstall: nothing to refresh
            self.send_event("push_token_updated")
            return
        body = {**self._credentials(), "old_token": old, "new_token": new, "platform": self.platform}
        if self.app_user_id:
            body["app_user_id"] = self.app_user_id
        response = self.transport.post("/devices/refresh-token", body)
        status = None if response is None else response.status_code
        if status == 200:
            self.stored_token = new
            self.stats.add("rotations")
        elif status == 400 and response.json().get("error") == "identical_tokens":
            self.stored_token = new
        elif status in (404, 409):
            # 404: Herald has no device with the old token; 409: another user's device holds
            # the new one. Either way a regular event registers the new token for this user.
            self.stats.add("refresh_not_found" if status == 404 else "refresh_conflicts")
            self.send_event("push_token_updated")
        else:
            # 401, 429, 5xx or no answer: keep the old token stored and try again next time.
            self.unauthorized = self.unauthorized or status == 401
            self.stats.add("refresh_failures")

    # What happens to the app.

    def open_app(self) -> None:
        """Launch: a new session, the token synced, then app_opened."""
        self.session_id = secrets.token_hex(8)
        self.sync_token()
        self.send_event("app_opened", {"source": "launcher"})

    def rotate_token(self) -> None:
        """Firebase hands the app a new token (onNewToken / didReceiveRegistrationToken)."""
        self.poll_inbox()  # what the old token received before it stops receiving
        self.fcm_token = fcm_like_token(self.rng)
        self.stats.add("tokens_rotated_by_firebase")
        self.sync_token()

    def reinstall(self) -> None:
        """Uninstall and install again: local storage gone, a new token, no refresh possible."""
        self.poll_inbox()
        self.stored_token = None
        self.fcm_token = fcm_like_token(self.rng)
        self.pending_opens.clear()
        self.stats.add("reinstalls")
        self.open_app()

    def grant_permission(self) -> None:
        self.push_permission = True
        self.stats.add("permissions_granted_later")
        self.send_event("push_permission_changed", {"granted": True})

    def poll_inbox(self) -> None:
        """Collect what the sandbox delivered to the current token; decide which get tapped."""
        messages = self.transport.inbox(token=self.fcm_token, after=self.inbox_cursor)
        for message in messages or []:
            self.inbox_cursor = max(self.inbox_cursor, message["id"])
            self.stats.add("pushes_received")
            tracking_token = (message.get("data") or {}).get("tracking_token")
            if tracking_token and self.rng.random() < self.config.open_rate:
                delay = self.rng.uniform(0, self.config.open_delay)
                self.pending_opens.append(PendingOpen(tracking_token, self.clock() + delay))

    def report_due_opens(self) -> None:
        now = self.clock()
        still_pending = []
        for pending in self.pending_opens:
            if pending.due > now:
                still_pending.append(pending)
                continue
            body = {**self._credentials(), "tracking_token": pending.tracking_token}
            response = self.transport.post("/pushes/opened", body)
            status = None if response is None else response.status_code
            if status == 200:
                self.stats.add("opens_reported")
            elif (status is None or status == 429 or status >= 500) and pending.attempts < 2:
                pending.attempts += 1
                still_pending.append(pending)
            else:
                self.stats.add("open_failures")
        self.pending_opens = still_pending

    def step(self) -> None:
        """One tick of app life."""
        if not self.registered:
            self.open_app()
            return
        if self.stored_token != self.fcm_token:
            self.sync_token()  # an earlier attempt failed: try again
        roll = self.rng.random()
        if roll < self.config.reinstall_chance:
            self.reinstall()
        elif roll < self.config.reinstall_chance + self.config.rotate_chance:
            self.rotate_token()
        self.poll_inbox()
        self.report_due_opens()
        if not self.push_permission and self.rng.random() < self.config.grant_later_chance:
            self.grant_permission()
        elif self.cart_buy_at is not None and self.clock() >= self.cart_buy_at:
            self.cart_buy_at = None
            self.send_event("purchase", PURCHASE(self.rng))
        elif self.rng.random() < self.config.event_chance:
            name, params = self.rng.choice(BROWSING)
            self.send_event(name, params(self.rng))
            if name == "cart_add" and self.cart_buy_at is None and self.rng.random() < BUY_CHANCE:
                self.cart_buy_at = self.clock() + self.rng.uniform(30, 90)


# --- The app's own server ---------------------------------------------------------------


class VirtualBackend:
    """The app's back end: a push to one user now and then, and a campaign to everyone."""

    def __init__(
        self,
        *,
        config: SimulatorConfig,
        transport: Transport,
        stats: Stats,
        rng: random.Random,
        run_id: str,
        devices: list[VirtualDevice],
        started: float,
    ):
        self.config, self.transport, self.stats, self.rng = config, transport, stats, rng
        self.run_id, self.devices = run_id, devices
        self.next_push = started + config.ramp_up + config.tick
        self.next_campaign = started + config.ramp_up + config.tick
        self.campaigns = 0

    def _headers(self) -> dict:
        return {"X-Server-Key": self.config.server_key}

    def _retry_after(self, response) -> float:
        try:
            return max(1.0, float(response.headers.get("Retry-After", "1")))
        except ValueError:
            return 1.0

    def step(self, now: float) -> None:
        if now >= self.next_push:
            self.next_push = now + self.config.push_every
            self.push_to_a_user(now)
        if now >= self.next_campaign:
            self.next_campaign = now + self.config.campaign_every
            self.send_campaign(now)

    def push_to_a_user(self, now: float) -> None:
        users = [d.app_user_id for d in self.devices if d.app_user_id and d.registered and d.push_permission]
        if not users:
            return
        title, body, extra = self.rng.choice(PUSHES)
        response = self.transport.post(
            "/developer/push",
            {
                "app_user_id": self.rng.choice(users),
                "title": title,
                "body": body,
                "extra_data": extra,
            },
            headers=self._headers(),
        )
        status = None if response is None else response.status_code
        if status == 201:
            self.stats.add("developer_pushes")
        elif status == 429:
            self.next_push = now + self._retry_after(response)
            self.stats.add("developer_pushes_rate_limited")
        else:
            self.stats.add("developer_push_failures")

    def send_campaign(self, now: float) -> None:
        self.campaigns += 1
        title, body = CAMPAIGNS[(self.campaigns - 1) % len(CAMPAIGNS)]
        response = self.transport.post(
            "/api/v1/messages",
            {"title": title, "body": body, "data": {"deep_link": "shop://sale"}},
            headers={**self._headers(), "Idempotency-Key": f"simulator-{self.run_id}-{self.campaigns}"},
        )
        if response is not None and response.status_code in (200, 202):
            self.stats.add("campaigns")
        else:
            self.stats.add("campaign_failures")


# --- The fleet --------------------------------------------------------------------------


class Simulator:
    """N virtual devices (and, with a server key, a virtual back end) on one clock."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[str], None] | None = None,
    ):
        self.config, self.clock, self.sleep, self.progress = config, clock, sleep, progress
        self.rng = random.Random(config.seed)
        self.run_id = f"{self.rng.getrandbits(16):04x}"
        self.stats = Stats()
        self.transport = Transport(
            base_url=config.base_url,
            sandbox_url=config.sandbox_url,
            max_requests=config.max_requests,
            timeout=config.timeout,
            stats=self.stats,
        )
        n = config.devices
        anonymous = set(self.rng.sample(range(n), round(n * config.anonymous_share)))
        denied = set(self.rng.sample(range(n), round(n * config.denied_share)))
        self.devices = [
            VirtualDevice(
                number=i,
                run_id=self.run_id,
                config=config,
                transport=self.transport,
                stats=self.stats,
                rng=random.Random(self.rng.getrandbits(64)),
                anonymous=i in anonymous,
                denied=i in denied,
                clock=clock,
            )
            for i in range(n)
        ]
        start = clock()
        for device in self.devices:  # registrations spread over the ramp-up
            device.next_tick = start + self.rng.uniform(0, config.ramp_up)
        self.backend = None
        if config.server_key:
            self.backend = VirtualBackend(
                config=config,
                transport=self.transport,
                stats=self.stats,
                rng=random.Random(self.rng.getrandbits(64)),
                run_id=self.run_id,
                devices=self.devices,
                started=start,
            )
        self.stop_reason = ""
        self.elapsed = 0.0

    def wait_until_reachable(self, timeout: float) -> bool:
        """Wait for Herald and the sandbox to answer (the demo starts them alongside)."""
        deadline = self.clock() + timeout
        # Probes that answer 200: a GET of /events would be logged as a 405 API error.
        urls = [f"{self.config.base_url}/healthz", f"{self.config.sandbox_url}/status"]
        while True:
            urls = [url for url in urls if not self.transport.reachable(url)]
            if not urls:
                return True
            if self.clock() >= deadline:
                return False
            self.sleep(0.5)

    def run(
        self, duration: float, *, until: Callable[[], bool] | None = None, progress_every: float = 10.0
    ) -> Stats:
        """Run the fleet for `duration` seconds, until the request budget is spent, or until
        `until()` is true (checked between rounds).

        May be called again: the same devices carry on where they stopped.
        """
        started = self.clock()
        deadline = started + duration
        next_progress = started + progress_every
        self.stop_reason = "duration"
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="virtual-device") as pool:
            try:
                while (now := self.clock()) < deadline:
                    due = [d for d in self.devices if d.next_tick <= now]
                    for device in due:
                        device.next_tick = now + self.config.tick * self.rng.uniform(0.75, 1.25)
                    for failure in pool.map(self._step, due):
                        if isinstance(failure, BudgetExhausted):
                            raise failure
                    if self.backend is not None:
                        self.backend.step(now)
                    if until is not None and until():
                        self.stop_reason = "condition"
                        break
                    if self._refused():
                        self.stop_reason = "unauthorized"
                        break
                    if self.progress and now >= next_progress:
                        next_progress = now + progress_every
                        self.progress(self.progress_line(now - started))
                    soonest = min(d.next_tick for d in self.devices)
                    self.sleep(max(0.01, min(soonest, deadline) - self.clock()))
            except BudgetExhausted:
                self.stop_reason = "request budget"
            finally:
                self.elapsed += self.clock() - started
        return self.stats

    def _refused(self) -> bool:
        # Herald refused the app key before any device got in: nothing will work.
        return any(d.unauthorized for d in self.devices) and not any(d.registered for d in self.devices)

    def _step(self, device: VirtualDevice) -> Exception | None:
        try:
            device.step()
        except BudgetExhausted as exc:
            return exc
        except Exception:  # one device's surprise must not stop the fleet
            log.exception("virtual device %s failed", device.number)
            self.stats.add("device_errors")
        return None

    def close(self) -> None:
        self.transport.close()

    def progress_line(self, elapsed: float) -> str:
        c = self.stats.counts
        return (
            f"[{elapsed:5.0f}s] registered {c['registered']}/{len(self.devices)}, events {c['events']}, "
            f"rotations {c['rotations']}, pushes received {c['pushes_received']}, "
            f"opens {c['opens_reported']}, requests {self.transport.sent}"
        )

    def summary(self) -> dict:
        """What happened, for people (see `summary_lines`) and machines."""
        platforms = Counter(d.platform for d in self.devices)
        return {
            "run_id": self.run_id,
            "stopped_by": self.stop_reason,
            "elapsed_seconds": round(self.elapsed, 1),
            "requests": self.transport.sent,
            "devices": {
                "total": len(self.devices),
                "registered": sum(d.registered for d in self.devices),
                "by_platform": dict(sorted(platforms.items())),
                "countries": len({d.country for d in self.devices}),
                "anonymous": sum(not d.app_user_id for d in self.devices),
                "push_denied": sum(not d.push_permission for d in self.devices),
            },
            **self.stats.as_dict(),
        }

    def summary_lines(self) -> list[str]:
        s = self.summary()
        d, c = s["devices"], s["counts"]
        received = c.get("pushes_received", 0)
        opens = c.get("opens_reported", 0)
        rate = f" ({opens / received:.0%} of received)" if received else ""
        platforms = ", ".join(f"{n} {p}" for p, n in d["by_platform"].items())
        lines = [
            f"Simulated {d['total']} devices for {s['elapsed_seconds']}s (stopped by {s['stopped_by']}; "
            f"run {s['run_id']}, {s['requests']} requests).",
            f"  devices registered   {d['registered']}/{d['total']}: {platforms}; "
            f"{d['countries']} countries; {d['anonymous']} anonymous; "
            f"{d['push_denied']} without push permission",
            f"  events sent          {c.get('events', 0)} ({c.get('event_failures', 0)} refused or failed)",
            f"  token rotations      {c.get('rotations', 0)} refreshed; "
            f"{c.get('refresh_not_found', 0)} × 404 and {c.get('refresh_conflicts', 0)} × 409 re-registered; "
            f"{c.get('reinstalls', 0)} reinstalls",
            f"  pushes received      {received}",
            f"  opens reported       {opens}{rate}",
        ]
        if self.backend is not None:
            lines.append(
                f"  back end             {c.get('developer_pushes', 0)} developer pushes, "
                f"{c.get('campaigns', 0)} campaigns, "
                f"{c.get('developer_pushes_rate_limited', 0)} rate-limited"
            )
        lines.append("  answers              " + ", ".join(f"{k}: {n}" for k, n in s["responses"].items()))
        return lines
