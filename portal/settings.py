"""Django settings, read from environment variables (see portal/env.py).

With no environment at all the portal runs on SQLite in var/ with Celery
tasks executed in-process, so a fresh checkout works without servers.
"""

from __future__ import annotations

from pathlib import Path

from django.utils.translation import gettext_lazy as _

from portal.env import read_base_url, read_bool, read_database_url, read_int, read_list, read_path, read_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = read_path("PORTAL_VAR_DIR", BASE_DIR / "var")
# SQLite cannot create the folder of its database file, so make it here.
VAR_DIR.mkdir(parents=True, exist_ok=True)

# A fixed key is only acceptable for local development, so DEBUG defaults off
# and production deployments must set DJANGO_SECRET_KEY.
SECRET_KEY = read_str("DJANGO_SECRET_KEY", "insecure-development-key-set-DJANGO_SECRET_KEY")
DEBUG = read_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = read_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "testserver"])
CSRF_TRUSTED_ORIGINS = read_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# The public address of the portal (scheme and host, such as https://cert.example.org), used in
# certificate QR codes, feeds and credentials. Unset, pages build it from the request (portal/links.py).
PORTAL_BASE_URL = read_base_url("PORTAL_BASE_URL")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "portal.audit",
    "portal.registry",
    "portal.submissions",
    "portal.certificates",
    "portal.tickets",
    "portal.evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "portal.submissions.uploads.UploadSizeLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": read_database_url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# After login without a `next` address: the staff queue for certification staff, My submissions for vendors.
LOGIN_REDIRECT_URL = "start-page"
LOGOUT_REDIRECT_URL = "certificate-list"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Asia/Shanghai"
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = read_path("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = read_path("DJANGO_MEDIA_ROOT", VAR_DIR / "media")

# The CJK font embedded in certificate PDFs; a system check reports it when missing.
CERTIFICATE_FONT_PATH = BASE_DIR / "static" / "fonts" / "wqy-microhei.ttf"
# The portal's Ed25519 key that signs run tickets; created on first use when missing.
PORTAL_TICKET_KEY_PATH = read_path("PORTAL_TICKET_KEY_PATH", VAR_DIR / "keys" / "portal-ticket.key")
# How long a run ticket stays valid: the run and the upload must both happen within it.
PORTAL_TICKET_LIFETIME_DAYS = read_int("PORTAL_TICKET_LIFETIME_DAYS", 14, minimum=1)
# The portal's own Ed25519 key that signs certificate credentials; created on first use when missing.
PORTAL_CREDENTIAL_KEY_PATH = read_path("PORTAL_CREDENTIAL_KEY_PATH", VAR_DIR / "keys" / "portal-credential.key")

# Uploads always stream to a temporary file; the handler stops at the size limit.
BUNDLE_UPLOAD_MAX_BYTES = read_int("BUNDLE_UPLOAD_MAX_BYTES", 2 * 1024**3, minimum=1024)
FILE_UPLOAD_HANDLERS = ["portal.submissions.uploads.LimitedTemporaryFileUploadHandler"]
FILE_UPLOAD_TEMP_DIR = read_str("DJANGO_FILE_UPLOAD_TEMP_DIR", "") or None
# Resumable uploads (/api/v1/uploads/) take the bundle in byte ranges of at most this size.
BUNDLE_UPLOAD_CHUNK_MAX_BYTES = read_int("BUNDLE_UPLOAD_CHUNK_MAX_BYTES", 64 * 1024**2, minimum=1024)
# An open resumable upload that received no bytes for this many hours expires and its partial file is deleted.
BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS = read_int("BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS", 48, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Accelerator certification portal API",
    "DESCRIPTION": "Upload of signed result bundles by the vendor agent.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# The public listing caches its rendered rows. The default folder is shared by the workers of one
# machine; set CACHE_REDIS_URL (redis://host:port/db) to share the cache between machines.
CACHE_REDIS_URL = read_str("CACHE_REDIS_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_REDIS_URL}
    if CACHE_REDIS_URL else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
}

# A broker set means Celery runs on workers; without one, tasks run in-process.
CELERY_BROKER_URL = read_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = read_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
# A task unacknowledged for longer than the visibility timeout is handed to another worker
# (Redis, SQS), so every time limit stays below it; a system check and a test hold this.
PORTAL_BROKER_VISIBILITY_TIMEOUT = read_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 3600, minimum=10)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": PORTAL_BROKER_VISIBILITY_TIMEOUT}
CELERY_TASK_TIME_LIMIT = read_int("CELERY_TASK_TIME_LIMIT", 1800, minimum=5)
CELERY_TASK_SOFT_TIME_LIMIT = read_int("CELERY_TASK_SOFT_TIME_LIMIT", CELERY_TASK_TIME_LIMIT - CELERY_TASK_TIME_LIMIT // 10, minimum=1)
# A worker killed in the middle of a task leaves its message unacknowledged, so it is delivered again.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Periodic tasks, run by `celery -A portal beat` next to the workers.
CELERY_BEAT_SCHEDULE = {
    "expire-upload-sessions": {"task": "portal.submissions.tasks.expire_upload_sessions", "schedule": 3600.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"class": "portal.logs.IsoTimeFormatter", "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"client_error_one_line": {"()": "portal.logs.ClientErrorOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": read_str("PORTAL_LOG_LEVEL", "INFO")},
    "loggers": {
        # WeasyPrint logs every rendering step at INFO.
        "weasyprint": {"level": "WARNING"}, "fontTools": {"level": "WARNING"},
        "django.request": {"filters": ["client_error_one_line"]},
    },
}

SESSION_COOKIE_HTTPONLY = True
# Production behind HTTPS: DJANGO_HTTPS=true turns on the redirect, HSTS and secure cookies
# that `manage.py check --deploy` asks for. DJANGO_BEHIND_PROXY=true trusts X-Forwarded-Proto.
HTTPS = read_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = read_bool("DJANGO_SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = read_int("DJANGO_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = read_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = read_bool("DJANGO_HSTS_PRELOAD", HTTPS)
if read_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
