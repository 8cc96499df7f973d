import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from tenants.codes import LANGUAGES, time_zones
from tenants.encryption import InvalidToken, decrypt

# last_used_at is a hint for humans, not an audit log: write it at most this
# often per key so that a busy key does not turn every request into an UPDATE.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def validate_language(value: str) -> None:
    if value not in LANGUAGES:
        raise ValidationError(
            "%(value)s is not an ISO 639-1 language code, e.g. en or tr.",
            params={"value": value},
            code="invalid_language",
        )


def validate_time_zone(value: str) -> None:
    if value not in time_zones():
        raise ValidationError(
            "%(value)s is not an IANA time zone name, e.g. UTC or Europe/Istanbul.",
            params={"value": value},
            code="invalid_time_zone",
        )


class Tenant(models.Model):
    """An app or customer: its own keys, devices, Firebase credentials and messages."""

    name = models.CharField(max_length=200)
    tenant_id = models.CharField(
        "tenant ID",
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_.-]+$", "Letters, digits, '_', '.' and '-' only.")],
        help_text="The public identifier apps send as tenant_id.",
    )
    default_language = models.CharField(
        max_length=2,
        default="en",
        validators=[validate_language],
        help_text="ISO 639-1, e.g. en: the language staff write in first.",
    )
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA, e.g. Europe/Istanbul: the zone staff schedule in.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Limits on marketing pushes (campaigns and staff messages; transactional ones are exempt).
    marketing_daily_cap = models.PositiveSmallIntegerField(
        "marketing pushes per user per day",
        null=True,
        blank=True,
        help_text="At most this many marketing pushes per user per local day, across campaigns "
        "and staff messages. Empty: no cap.",
    )
    quiet_hours_start = models.TimeField(
        null=True,
        blank=True,
        help_text="No marketing push from this local time (the user's zone, else the tenant's)…",
    )
    quiet_hours_end = models.TimeField(
        null=True, blank=True, help_text="…until this one (22:00 to 08:00 spans midnight)."
    )
    # Retention: how many days rows are kept. Empty: the RETENTION_*_DAYS setting; 0: forever.
    retention_events_days = models.PositiveIntegerField(
        "keep events (days)",
        null=True,
        blank=True,
        help_text="Empty: the server's default (RETENTION_EVENTS_DAYS). 0 keeps them forever.",
    )
    retention_deliveries_days = models.PositiveIntegerField(
        "keep deliveries (days)",
        null=True,
        blank=True,
        help_text="Per-device delivery rows of finished messages; message totals are kept. "
        "Empty: RETENTION_DELIVERIES_DAYS. 0 keeps them forever.",
    )
    retention_token_history_days = models.PositiveIntegerField(
        "keep token history (days)",
        null=True,
        blank=True,
        help_text="Old tokens of rotated devices. Empty: RETENTION_TOKEN_HISTORY_DAYS. 0 keeps them forever.",
    )
    retention_ran_at = models.DateTimeField("retention last ran", null=True, blank=True, editable=False)
    retention_report = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant_id})"

    def clean(self):
        super().clean()
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if (start is None) != (end is None):
            raise ValidationError({"quiet_hours_end": "Set both ends of the quiet hours, or neither."})
        if start is not None and start == end:
            raise ValidationError(
                {"quiet_hours_end": "The quiet hours must end at another time than they start."}
            )

    def retention_days(self) -> dict[str, int]:
        """Days each kind of row is kept (0: forever), the tenant's own or the defaults."""
        return {
            "events": _or_default(self.retention_events_days, settings.RETENTION_EVENTS_DAYS),
            "deliveries": _or_default(self.retention_deliveries_days, settings.RETENTION_DELIVERIES_DAYS),
            "token_rotations": _or_default(
                self.retention_token_history_days, settings.RETENTION_TOKEN_HISTORY_DAYS
            ),
        }

    def deactivate(self, *, reason: str = "The tenant was deactivated.") -> bool:
        """Deactivate the tenant and stop its pushes (see `tenants.signals.tenant_deactivated`).

        Returns False when it was inactive already (its work is stopped again all the same).
        A form that saved `is_active=False` itself calls `announce_deactivation` instead.
        """
        changed = bool(Tenant.objects.filter(pk=self.pk, is_active=True).update(is_active=False))
        self.is_active = False
        self.announce_deactivation(reason=reason)
        return changed

    def announce_deactivation(self, *, reason: str = "The tenant was deactivated.") -> None:
        """Tell the rooms above (messaging, campaigns) to stop this inactive tenant's work."""
        from tenants.signals import tenant_deactivated

        tenant_deactivated.send(Tenant, tenant=self, reason=reason)


def _or_default(days: int | None, default: int) -> int:
    return default if days is None else days


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True, tenant__is_active=True)


def hash_key(raw_key: str) -> str:
    """SHA-256 of a key. Keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A credential of one tenant. Only its hash is stored; the key is shown once."""

    class Kind(models.TextChoices):
        APP = "app", "App key (ships inside apps)"
        SERVER = "server", "Server key (secret, can send pushes)"

    PREFIXES = {Kind.APP: "hrld_app_", Kind.SERVER: "hrld_srv_"}

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the key, so people can tell keys apart.
    prefix = models.CharField(max_length=20, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "-created_at"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=["app", "server"]), name="api_key_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def generate(cls, *, tenant: Tenant, name: str, kind: str, created_by=None) -> tuple["ApiKey", str]:
        """Create a key and return it with the raw key, which is never available again."""
        raw = cls.PREFIXES[kind] + secrets.token_urlsafe(32)
        key = cls.objects.create(
            tenant=tenant,
            name=name,
            kind=kind,
            key_hash=hash_key(raw),
            prefix=raw[: len(cls.PREFIXES[kind]) + 6],
            created_by=created_by,
        )
        return key, raw

    def revoke(self) -> None:
        ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.refresh_from_db(fields=["revoked_at"])

    def touch(self) -> None:
        """Record a use, at most once per LAST_USED_RESOLUTION, with one conditional UPDATE."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < LAST_USED_RESOLUTION:
            return
        ApiKey.objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        self.last_used_at = now


class Membership(models.Model):
    """A staff user's role within one tenant. Superusers need none: they see every tenant."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        EDITOR = "editor", "Editor"
        ADMIN = "admin", "Tenant admin"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.user} – {self.tenant} ({self.get_role_display()})"


class FirebaseCredential(models.Model):
    """A tenant's Firebase service account, which Herald signs FCM access-token requests with.

    Everything but the private key is shown in the admin; the private key is stored
    encrypted (see ``tenants.encryption``) and never leaves Herald again. Upload one
    with ``tenants.credentials.set_credentials``.
    """

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="firebase_credential")
    project_id = models.CharField("project ID", max_length=100)
    client_email = models.CharField(max_length=254)
    private_key_id = models.CharField("key ID", max_length=100, blank=True)
    token_uri = models.CharField("token URI", max_length=500)
    encrypted_private_key = models.TextField(editable=False)
    uploaded_at = models.DateTimeField(default=timezone.now, editable=False)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        editable=False,
        related_name="+",
    )
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_ok = models.BooleanField(null=True, editable=False)
    last_check_message = models.TextField(blank=True, editable=False)

    class Meta:
        verbose_name = "Firebase credential"
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(project_id="")
                & ~models.Q(client_email="")
                & ~models.Q(token_uri="")
                & ~models.Q(encrypted_private_key=""),
                name="firebase_credential_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} ({self.client_email})"

    def service_account_info(self) -> dict:
        """The service-account JSON as Google issued it, private key decrypted.

        Raises ``tenants.encryption.InvalidToken`` when no configured key decrypts it
        (HERALD_ENCRYPTION_KEYS or SECRET_KEY changed without keeping the old one).
        """
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": decrypt(self.encrypted_private_key),
            "client_email": self.client_email,
            "token_uri": self.token_uri,
        }

    @property
    def key_is_readable(self) -> bool:
        """Whether a configured key decrypts the private key (False after a botched rotation)."""
        try:
            decrypt(self.encrypted_private_key)
        except InvalidToken:
            return False
        return True

    def record_check(self, *, ok: bool, message: str) -> None:
        """Remember the outcome of a credential check, without touching the key."""
        now = timezone.now()
        FirebaseCredential.objects.filter(pk=self.pk).update(
            last_checked_at=now, last_check_ok=ok, last_check_message=message
        )
        self.last_checked_at, self.last_check_ok, self.last_check_message = now, ok, message
