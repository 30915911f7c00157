import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import checks
from portal.env import read_base_url, read_bool, read_database_url, read_int, read_list, read_path, read_str


def test_readers_use_defaults_without_environment(monkeypatch):
    for name in ("X_STR", "X_BOOL", "X_INT", "X_LIST"):
        monkeypatch.delenv(name, raising=False)
    assert read_str("X_STR", "fallback") == "fallback"
    assert read_bool("X_BOOL", True) is True
    assert read_int("X_INT", 7) == 7
    assert read_list("X_LIST", ["a"]) == ["a"]


@pytest.mark.parametrize("text, expected", [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)])
def test_read_bool_accepts_words(monkeypatch, text, expected):
    monkeypatch.setenv("X_BOOL", text)
    assert read_bool("X_BOOL", not expected) is expected


@pytest.mark.parametrize("reader, value", [
    (lambda: read_bool("X_VAR", False), "maybe"),
    (lambda: read_int("X_VAR", 1), "ten"),
    (lambda: read_int("X_VAR", 1, minimum=1024), "10"),
    (lambda: read_path("X_VAR", None), "relative/dir"),
    (lambda: read_database_url("X_VAR", "sqlite:///x"), "mysql://root@localhost/db"),
    (lambda: read_base_url("X_VAR"), "cert.example.org"),
    (lambda: read_base_url("X_VAR"), "https://cert.example.org/portal"),
])
def test_invalid_values_name_variable_and_value(monkeypatch, reader, value):
    monkeypatch.setenv("X_VAR", value)
    with pytest.raises(ImproperlyConfigured) as raised:
        reader()
    assert "X_VAR" in str(raised.value)
    assert repr(value) in str(raised.value)


def test_read_base_url_drops_slash(monkeypatch):
    monkeypatch.setenv("X_URL", "https://cert.example.org/")
    assert read_base_url("X_URL") == "https://cert.example.org"
    monkeypatch.delenv("X_URL")
    assert read_base_url("X_URL") == ""


def test_read_list_splits_commas(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert read_list("X_LIST", []) == ["a.example", "b.example"]


def test_database_url_postgres(monkeypatch):
    monkeypatch.setenv("X_DB", "postgres://postgres@127.0.0.1:5432/cert")
    config = read_database_url("X_DB", "sqlite:///unused")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "cert"


def test_defaults_are_the_embedded_setup(settings):
    assert settings.TIME_ZONE == "Asia/Shanghai"
    assert settings.LANGUAGE_CODE == "zh-hans"
    assert "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE
    assert str(settings.MEDIA_ROOT).endswith("media")


def test_check_broker_missing_when_not_eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = ""
    assert [error.id for error in checks.check_celery_broker(None)] == ["portal.E001"]


def test_check_broker_passes_with_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert checks.check_celery_broker(None) == []


def test_check_font_missing(settings, tmp_path):
    settings.CERTIFICATE_FONT_PATH = tmp_path / "missing.ttf"
    errors = checks.check_certificate_font(None)
    assert [error.id for error in errors] == ["portal.E002"]
    assert errors[0].hint


def test_check_font_present(settings):
    assert checks.check_certificate_font(None) == []


def test_task_time_limits_are_below_the_visibility_timeout(settings):
    """A task still running when the broker's visibility timeout passes would be handed to a second worker."""
    from portal.celery import app

    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT < settings.PORTAL_BROKER_VISIBILITY_TIMEOUT
    assert app.conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT
    assert app.conf.broker_transport_options["visibility_timeout"] == settings.PORTAL_BROKER_VISIBILITY_TIMEOUT
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert checks.check_task_time_limits(None) == []


def test_check_time_limit_past_visibility_timeout(settings):
    settings.CELERY_TASK_TIME_LIMIT = settings.PORTAL_BROKER_VISIBILITY_TIMEOUT + 60
    assert [error.id for error in checks.check_task_time_limits(None)] == ["portal.E004"]


def test_check_secret_key_missing_outside_the_embedded_setup(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.SECRET_KEY = checks.DEVELOPMENT_KEY_PREFIX + "-set-DJANGO_SECRET_KEY"
    errors = checks.check_secret_key(None)
    assert [error.id for error in errors] == ["portal.E003"]
    assert "DJANGO_SECRET_KEY" in errors[0].hint


def test_check_secret_key_quiet_on_the_embedded_setup(settings):
    settings.SECRET_KEY = checks.DEVELOPMENT_KEY_PREFIX + "-set-DJANGO_SECRET_KEY"
    settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL = True, ""
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        assert checks.check_secret_key(None) == []


def test_check_base_url_missing_in_production(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.PORTAL_BASE_URL = ""
    assert [warning.id for warning in checks.check_public_base_url(None)] == ["portal.W001"]
    settings.PORTAL_BASE_URL = "https://cert.example.com"
    assert checks.check_public_base_url(None) == []


PRODUCTION_ENVIRONMENT = {
    "DJANGO_SECRET_KEY": "k" * 20 + "production-test-secret-value-with-enough-length-0123456789",
    "DJANGO_HTTPS": "true", "DJANGO_BEHIND_PROXY": "true", "DJANGO_ALLOWED_HOSTS": "cert.example.com",
    "DATABASE_URL": "postgres://portal@db.example.com:5432/portal", "CELERY_BROKER_URL": "redis://broker.example.com:6379/0",
    "PORTAL_BASE_URL": "https://cert.example.com",
}


def run_check(extra_env: dict, *arguments: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL", "CELERY_"))}
    env.update(extra_env)
    return subprocess.run([sys.executable, "manage.py", "check", *arguments], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_under_production_settings():
    result = run_check(PRODUCTION_ENVIRONMENT, "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_reports_missing_secret_key_in_production():
    environment = {key: value for key, value in PRODUCTION_ENVIRONMENT.items() if key != "DJANGO_SECRET_KEY"}
    result = run_check(environment)
    assert result.returncode != 0
    assert "portal.E003" in result.stderr
