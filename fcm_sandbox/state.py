"""What the sandbox keeps in memory: its knobs, the access tokens it issued, counters.

Access tokens live only in the serving process, like a session: restart the sandbox
and every client's token is refused with 401, which exercises the client's
refresh-once-and-retry path. Received messages and known service accounts are in the
database (``fcm_sandbox.models``), so other processes can read and add them.
"""

import random
import secrets
import threading
import time
from dataclasses import dataclass, field


@dataclass
class SandboxSettings:
    """The knobs of a running sandbox; ``manage.py fcm_sandbox`` exposes each one."""

    latency_ms: int = 0  # added before every messages:send answer
    failure_rate: float = 0.0  # share of sends answered 503 UNAVAILABLE or 500 INTERNAL
    token_lifetime: int = 3600  # seconds; Google's tokens live an hour
    seed: int | None = None  # makes random failures repeatable


@dataclass(frozen=True)
class Grant:
    """An issued access token: who it was issued to and until when."""

    client_email: str
    project_id: str
    expires_at: float  # time.time()


@dataclass
class SandboxState:
    settings: SandboxSettings = field(default_factory=SandboxSettings)
    token_requests: int = 0
    send_requests: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}
        self._failed_once: set[str] = set()
        self._random = random.Random(self.settings.seed)

    def configure(self, **changes) -> None:
        """Forget every token and counter and apply new settings (tests start from here)."""
        with self._lock:
            self.settings = SandboxSettings(**changes)
            self.token_requests = self.send_requests = 0
            self._grants.clear()
            self._failed_once.clear()
            self._random = random.Random(self.settings.seed)

    def issue_token(self, *, client_email: str, project_id: str) -> tuple[str, int]:
        """A new access token and its lifetime in seconds."""
        token = "ya29.sandbox." + secrets.token_urlsafe(48)
        lifetime = self.settings.token_lifetime
        now = time.time()
        with self._lock:
            self.token_requests += 1
            if len(self._grants) > 10_000:  # a long-running demo must not grow forever
                self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
            self._grants[token] = Grant(client_email, project_id, now + lifetime)
        return token, lifetime

    def grant(self, token: str) -> tuple[Grant | None, bool]:
        """The grant of a bearer token and whether it has expired ((None, False) if unknown)."""
        grant = self._grants.get(token)
        if grant is None:
            return None, False
        return grant, grant.expires_at <= time.time()

    def revoke_access_tokens(self) -> None:
        """Forget every issued token, as Google does when a key is disabled."""
        with self._lock:
            self._grants.clear()

    def count_send(self) -> None:
        with self._lock:
            self.send_requests += 1

    def first_failure(self, key: str) -> bool:
        """True the first time ``key`` is seen (for the fail-once fault tokens)."""
        with self._lock:
            if key in self._failed_once:
                return False
            self._failed_once.add(key)
            return True

    def random_failure(self) -> int | None:
        """503 or 500 with probability ``failure_rate``; None otherwise."""
        rate = self.settings.failure_rate
        if rate <= 0:
            return None
        with self._lock:
            if self._random.random() >= rate:
                return None
            return self._random.choice((503, 500))


# The one sandbox of this process (views and the server share it).
state = SandboxState()
