"""Herald's settings: one file, every value from the environment.

With no environment at all Herald runs on a SQLite file beside manage.py, queues
background work in the same database, and talks to Google's real FCM endpoints.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The repository's key is public: it signs nothing safely and derives a public encryption key.
INSECURE_SECRET_KEY = "herald-insecure-development-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_SECRET_KEY)
if SECRET_KEY == INSECURE_SECRET_KEY and not DEBUG:
    raise environ.ImproperlyConfigured(
        "SECRET_KEY is the repository's public development key. Set SECRET_KEY to a long random "
        "value (python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DEBUG=true for "
        "development only."
    )
# Old keys, newest first, still accepted for sessions, signatures and stored Firebase
# credentials while a new SECRET_KEY takes over (comma-separated). See the README's rotation.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks_db",
    "api",
    "axes",
    "tenants",
    "devices",
    "audiences",
    "messaging",
    "campaigns",
    "webhooks",
]
# The FCM sandbox (a fake Google for development: `manage.py demo`, `fcm_sandbox`,
# `simulate_devices`) is installed only when enabled, so a production database has none of
# its tables. `make demo` and the test suite enable it. It is served only by `manage.py
# fcm_sandbox`, never by Herald's own URLconf, and nothing in Herald imports it.
FCM_SANDBOX_ENABLED = env.bool("FCM_SANDBOX_ENABLED", default=False)
if FCM_SANDBOX_ENABLED:
    INSTALLED_APPS.append("fcm_sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # An API body over API_MAX_BODY_BYTES gets the JSON 413 before anything reads it.
    "api.middleware.BodySizeLimitMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "api.metrics.RequestMetricsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A plainly valid POST /events or /devices/refresh-token is answered here; what follows
    # serves the admin's pages and the DRF views (tenants.auth.PlainPathMiddleware).
    "tenants.auth.PlainPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "api.throttling.AuthFailureLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",  # {{ csp_nonce }}
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'herald.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE makes a write
    # transaction take its lock up front instead of failing half-way with
    # "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so that tests can hand the database to real worker processes;
    # one per test run, so that concurrent runs in one checkout do not meet.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")
    )
else:
    # One test database per test run, so that concurrent runs against one server do not meet.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
    )
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # Django's backend, with a health check that sends SELECT 1 only when the connection's
    # socket shows the server has said something (see config/postgresql/base.py).
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "config.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Background work ----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
TASK_BACKEND = env.str("TASK_BACKEND", default="database")
_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "rq": "django_tasks_rq.RQBackend",
    "immediate": "django.tasks.backends.immediate.ImmediateBackend",
}
if TASK_BACKEND not in _TASK_BACKENDS:
    raise environ.ImproperlyConfigured(
        f"TASK_BACKEND must be one of {', '.join(_TASK_BACKENDS)}, not {TASK_BACKEND!r}"
    )
TASKS = {
    "default": {
        "BACKEND": _TASK_BACKENDS[TASK_BACKEND],
        # Webhook posts have a queue of their own, so that a slow tenant endpoint never
        # holds up delivery: run `db_worker --queue-name webhooks` beside the senders.
        "QUEUES": ["default", "webhooks"],
    }
}
if TASK_BACKEND == "rq":
    if not REDIS_URL:
        raise environ.ImproperlyConfigured("TASK_BACKEND=rq needs REDIS_URL")
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600} for name in ("default", "webhooks")}

# How POST /events writes: "direct" (the request stores the event, its user and its device before
# it answers) or "queue" (the request appends the event to a Redis stream and answers; `manage.py
# herald_ingest` writes the stream to the database in batches). A 200 then means "queued": the
# event is as durable as Redis is (README.md, "Queued ingestion").
EVENTS_INGEST = env.str("EVENTS_INGEST", default="direct")
if EVENTS_INGEST not in ("direct", "queue"):
    raise environ.ImproperlyConfigured(f"EVENTS_INGEST must be direct or queue, not {EVENTS_INGEST!r}")
if EVENTS_INGEST == "queue" and not REDIS_URL:
    raise environ.ImproperlyConfigured("EVENTS_INGEST=queue needs REDIS_URL (the queue is a Redis stream)")
# /healthz reports "degraded" when the oldest queued event has waited longer than this (seconds).
EVENTS_INGEST_STALE_SECONDS = env.float("EVENTS_INGEST_STALE_SECONDS", default=60.0)
# The most events the stream holds: past it (no writer keeping up for a long while) a request
# writes its event directly, as in direct mode, instead of growing Redis without bound.
EVENTS_INGEST_MAX_QUEUED = env.int("EVENTS_INGEST_MAX_QUEUED", default=1_000_000)
if EVENTS_INGEST_MAX_QUEUED < 1:
    raise environ.ImproperlyConfigured("EVENTS_INGEST_MAX_QUEUED must be at least 1")

# --- Cache ---------------------------------------------------------------------------
# Shared through Redis when REDIS_URL is set. Rate limits talk to REDIS_URL directly (one
# round trip per check, see api/throttling.py) and use this cache only without Redis,
# where each process counts on its own.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "herald",
            "OPTIONS": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- API ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PARSER_CLASSES": ["api.errors.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.PerIpThrottle", "api.throttling.PerKeyThrottle"],
    # Behind a proxy, the client IP is the N-th address from the right of X-Forwarded-For.
    # 0 (the default): REMOTE_ADDR, whatever X-Forwarded-For says. DRF's own default (None)
    # believes any X-Forwarded-For a client sends, so a client could name itself anew on every
    # request and slip past the per-IP limits, the admin's sign-in lockout and
    # METRICS_ALLOWED_NETWORKS.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
# Rate limits on every API endpoint ("count/s|min|hour|day"; empty for none). An app key
# is shared by every install of an app, so its limit is high. On the server endpoints one
# IP is one back end; on the app endpoints it may be a carrier NAT with thousands of phones
# behind it, so their budget is per tenant and IP, and large (see the README).
RATE_LIMIT_PER_IP = env.str("RATE_LIMIT_PER_IP", default="1200/min")
RATE_LIMIT_APP_PER_IP = env.str("RATE_LIMIT_APP_PER_IP", default="12000/min")
RATE_LIMIT_PER_KEY = env.str("RATE_LIMIT_PER_KEY", default="120000/min")
# Failed authentications (401s) per client IP, counted before authentication; over it, every
# API request from that IP answers 429 until the window passes.
RATE_LIMIT_AUTH_FAILURES_PER_IP = env.str("RATE_LIMIT_AUTH_FAILURES_PER_IP", default="30/min")
# Rate limits never wait long for Redis: a short timeout, then a circuit breaker keeps it
# out for a few seconds (each process counts in its own memory meanwhile).
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.25)
REDIS_BREAKER_SECONDS = env.float("REDIS_BREAKER_SECONDS", default=5.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": (
        "Self-hosted push notifications. The app endpoints (`/events`, "
        "`/devices/refresh-token`, `/pushes/opened`) and `/developer/push` are "
        "wire-compatible with SmartAppPush: switch by changing the base URL."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from Herald itself: the docs page works with no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PlatformEnum": "devices.models.Platform",
        "KindEnum": "messaging.models.Audience",
        "StatusEnum": "messaging.models.Message.Status",
        "CampaignKindEnum": "campaigns.models.Kind",
        "CampaignStatusEnum": "campaigns.models.Status",
        "CampaignAudienceKindEnum": "campaigns.models.AudienceKind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.openapi.document_rate_limits",
        "api.metrics.document_metrics_endpoint",
    ],
}
# SmartAppPush allows 100 requests/s per IP on /developer/push; so does Herald by default.
DEVELOPER_PUSH_RATE = env.str("DEVELOPER_PUSH_RATE", default="100/s")
# Seconds each web process trusts an API key it has read (with its tenant) before reading it
# again: a revoked key or a deactivated tenant is refused everywhere within this time. 0: no cache.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)
# The largest JSON body the API reads, in bytes; larger ones get 413.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)

# --- FCM ----------------------------------------------------------------------
FCM_API_URL = env.str("FCM_API_URL", default="https://fcm.googleapis.com").rstrip("/")
# When set, overrides the token_uri of every service account (the operator's choice).
FCM_TOKEN_URL = env.str("FCM_TOKEN_URL", default="")
# Where FCM v1 lives in the sandbox, see below; its token endpoint is allowed when enabled.
FCM_SANDBOX_URL = env.str("FCM_SANDBOX_URL", default="http://127.0.0.1:9099").rstrip("/")
# Token endpoints a service account's token_uri may name besides Google's two, exactly
# (comma-separated). An uploaded key naming any other is refused, at upload and at use, so
# that an upload cannot aim Herald's processes at internal services (SSRF).
FCM_ALLOWED_TOKEN_URIS = env.list("FCM_ALLOWED_TOKEN_URIS", default=[])
if FCM_SANDBOX_ENABLED:
    FCM_ALLOWED_TOKEN_URIS.append(f"{FCM_SANDBOX_URL}/token")
# Seconds to wait for the token endpoint (connect, then read); redirects are never followed.
FCM_TOKEN_TIMEOUT = env.float("FCM_TOKEN_TIMEOUT", default=5.0)
# Key that encrypts service-account private keys at rest (Fernet, comma-separated
# for rotation: the first encrypts, all decrypt). Derived from SECRET_KEY when unset.
HERALD_ENCRYPTION_KEYS = env.list("HERALD_ENCRYPTION_KEYS", default=[])
# Keep-alive connections an FCM client keeps: at least the threads sending at once
# (SEND_CONCURRENCY). Connections open only as needed, so a generous cap costs nothing.
FCM_HTTP_POOL_SIZE = env.int("FCM_HTTP_POOL_SIZE", default=128)
# Seconds to wait for FCM (connect, then each read) before a send fails with TIMEOUT.
FCM_HTTP_TIMEOUT = env.float("FCM_HTTP_TIMEOUT", default=10.0)
# How the FCM client speaks HTTP: "curl" (libcurl through pycurl: HTTP/2 streams, the HTTP
# work in C; a worker hands it whole batches through send_many from one thread) or
# "urllib3" (a keep-alive pool, one request per SEND_CONCURRENCY thread), the fallback. On
# the whole send path curl costs a worker about a fifth of urllib3's CPU per delivery and
# sends ~1.7x as fast (bench/README.md, "Fan-out figures", issue 16).
HERALD_FCM_TRANSPORT = env.str("HERALD_FCM_TRANSPORT", default="curl")
# FCM_SANDBOX_URL (above): where `manage.py fcm_sandbox` listens by default and where
# `sandbox_credentials` points a tenant's token_uri. Set FCM_API_URL to the same URL to
# send to the sandbox.

# --- Delivery ------------------------------------------------------------------
# Devices per fan-out chunk, and concurrent FCM requests per chunk.
FANOUT_CHUNK_SIZE = env.int("FANOUT_CHUNK_SIZE", default=1000)
# Chunks one fan-out task writes before it queues its continuation: a worker is back at
# the queue (where another tenant's new message ranks first) every few seconds.
FANOUT_TASK_CHUNKS = env.int("FANOUT_TASK_CHUNKS", default=4)
# FCM answers in 20–100 ms: 128 requests in flight keep one worker near its CPU limit
# (at 50 ms, 32 in flight would cap it at 640/s; see bench/send_throughput.py).
SEND_CONCURRENCY = env.int("SEND_CONCURRENCY", default=128)
# A worker's claim on a chunk of deliveries; when a worker dies, its claim runs out and
# another worker picks the deliveries up.
DELIVERY_CLAIM_SECONDS = env.int("DELIVERY_CLAIM_SECONDS", default=300)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=6)
# Send results are written every this many answers or this many seconds, whichever comes
# first, and at most DELIVERY_MAX_UNRECORDED sends are ever between the start of their
# request and the commit of their result: what a worker killed mid-send can deliver twice
# (each resend carries the first one's collapse key, so the device shows it once). Each
# batch is one statement; the cap leaves room for sends to go on while a batch is written.
# 500 / 0.5 s / 1,000: two statements per 1,000 deliveries. The curl transport records one
# batch while the next is in flight, so its batches are at most half the cap (at 640, 320
# rows: one statement more per 1,000); README.md, "The crash window", has the trade-off.
DELIVERY_RESULT_BATCH = env.int("DELIVERY_RESULT_BATCH", default=500)
DELIVERY_RESULT_INTERVAL = env.float("DELIVERY_RESULT_INTERVAL", default=0.5)
DELIVERY_MAX_UNRECORDED = env.int("DELIVERY_MAX_UNRECORDED", default=1000)
# A send task goes on with its message's next queued chunks (and fan-out) while they are
# next in the queue, for at most this many seconds: sends stay in flight from chunk to
# chunk, and the worker is back at the queue (and can be stopped) every so often.
DELIVERY_PIPELINE_SECONDS = env.float("DELIVERY_PIPELINE_SECONDS", default=30.0)
# herald_beat resumes due work nobody has picked up for this long.
DELIVERY_RECOVERY_GRACE_SECONDS = env.int("DELIVERY_RECOVERY_GRACE_SECONDS", default=30)

# --- Campaigns -----------------------------------------------------------------
# A worker's claim on a batch of due triggers; a dead worker's batch is taken up after it.
CAMPAIGN_TRIGGER_CLAIM_SECONDS = env.int("CAMPAIGN_TRIGGER_CLAIM_SECONDS", default=120)
# Due triggers a worker claims at once (each campaign's share is one message).
CAMPAIGN_TRIGGER_BATCH = env.int("CAMPAIGN_TRIGGER_BATCH", default=500)
# After an event a trigger may match, each web process queues one match task per tenant
# at most this often (seconds); the task reads every event since the last.
CAMPAIGN_MATCH_DEBOUNCE = env.float("CAMPAIGN_MATCH_DEBOUNCE", default=0.2)
# Events this recent are read again by the next match (an event's transaction may commit
# after one with a higher id was read); older ones are behind the tenant's cursor for good.
CAMPAIGN_EVENT_SETTLE_SECONDS = env.float("CAMPAIGN_EVENT_SETTLE_SECONDS", default=3.0)

# --- Webhooks ------------------------------------------------------------------
# Webhook URLs may not resolve to private, loopback, link-local or reserved addresses
# unless this is on (tests and private deployments); plain http only with the second.
WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", default=False)
WEBHOOKS_ALLOW_HTTP = env.bool("WEBHOOKS_ALLOW_HTTP", default=False)
# Events per POST: a delivery storm becomes one POST per this many events.
WEBHOOKS_BATCH_SIZE = env.int("WEBHOOKS_BATCH_SIZE", default=100)
WEBHOOKS_CONNECT_TIMEOUT = env.float("WEBHOOKS_CONNECT_TIMEOUT", default=3.0)
WEBHOOKS_READ_TIMEOUT = env.float("WEBHOOKS_READ_TIMEOUT", default=5.0)
# An endpoint whose every attempt failed for this long, or this many times in a row
# (0: no such limit), is disabled.
WEBHOOKS_DISABLE_AFTER_HOURS = env.float("WEBHOOKS_DISABLE_AFTER_HOURS", default=24)
WEBHOOKS_DISABLE_AFTER_FAILURES = env.int("WEBHOOKS_DISABLE_AFTER_FAILURES", default=50)
# After a secret is rotated, posts carry a signature with the old secret too, this long.
WEBHOOKS_SECRET_GRACE_HOURS = env.float("WEBHOOKS_SECRET_GRACE_HOURS", default=24)
# Delivered events and logged attempts are kept this many days.
WEBHOOKS_KEEP_DAYS = env.int("WEBHOOKS_KEEP_DAYS", default=14)
WEBHOOKS_MAX_ENDPOINTS = env.int("WEBHOOKS_MAX_ENDPOINTS", default=20)

# --- Devices ------------------------------------------------------------------
# Devices not seen for this many days are deactivated by the hygiene task
# (FCM itself expires tokens inactive for 270 days).
DEVICE_STALE_AFTER_DAYS = env.int("DEVICE_STALE_AFTER_DAYS", default=270)

# --- Metrics (GET /metrics, docs/operations.md) ------------------------------------------
# Off (404) unless one of these is set; when both are, a scrape must satisfy both.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise environ.ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_network!r} is no network") from None
# A tenant label on delivery metrics: one series per tenant, so only for a few tenants.
METRICS_TENANT_LABEL = env.bool("METRICS_TENANT_LABEL", default=False)
# prometheus-client reads this from the environment itself; every process of the machine
# (gunicorn workers, task workers) writes its counts there, and a scrape adds them up.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)

# --- Retention (messaging/retention.py; a tenant may set its own) ---------------------------
# Days rows are kept; 0 keeps them forever. Deliveries: of finished messages, whose totals stay.
RETENTION_EVENTS_DAYS = env.int("RETENTION_EVENTS_DAYS", default=180)
RETENTION_DELIVERIES_DAYS = env.int("RETENTION_DELIVERIES_DAYS", default=90)
RETENTION_TOKEN_HISTORY_DAYS = env.int("RETENTION_TOKEN_HISTORY_DAYS", default=365)
# Rows per DELETE: short transactions, never one statement that locks a table for minutes.
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=5000)

# --- Internationalisation, static files ----------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["config.formats"]  # one date format: 30 Nov 2026, 05:43
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
WHITENOISE_ROOT = BASE_DIR / "config" / "public"  # files served at the site's root: /favicon.ico
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security --------------------------------------------------------------------
# HTTPS_ONLY=true for a deployment behind TLS: secure cookies, HSTS, redirects to https.
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=False)
SECURE_SSL_REDIRECT = HTTPS_ONLY
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS_ONLY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = HTTPS_ONLY
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    # Only behind a proxy that sets the header itself; otherwise clients could forge it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # load balancers and Prometheus use plain HTTP
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every page: scripts and style sheets from Herald itself (or
# carrying the page's nonce), no inline handlers, no plugins, no framing. Style attributes
# stay allowed (progress bars set widths), and images may come from any https origin
# (a push's image is previewed where it lives). The API docs page loosens it a little
# (config/urls.py).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", "https:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Admin sign-in ---------------------------------------------------------------------
# django-axes counts failed sign-ins per username and per client address (each on its own):
# past LOGIN_FAILURE_LIMIT failures within LOGIN_COOLOFF_MINUTES, that username (from any
# address) and that address (for any username) are refused until the cool-off has passed
# since the last failure. Unlock with manage.py axes_reset_username / axes_reset_ip /
# axes_reset, or in the admin (Axes > Access attempts). The API signs nobody in: unaffected.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The client's address as the API's rate limits read it (NUM_PROXIES).
AXES_CLIENT_IP_CALLABLE = "api.throttling.client_ip"
AXES_LOCKOUT_CALLABLE = "tenants.staff_login.lockout_response"
# A success must not wipe the address's failures: one valid login would reset a guesser's count.
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False

# --- Logs ------------------------------------------------------------------------------
# LOG_FORMAT=json writes one JSON object per line, with the fields code passes in
# `extra` (message ids, counts, error codes); never request bodies or keys.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
