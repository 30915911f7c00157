"""Shared personas and helpers for the portal tests.

Personas: `owner` is a member of `vendor`, `outsider` is a member of
another vendor, `staff` is certification staff (a reviewer),
`administrator` is a staff administrator and `client` is anonymous.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from certification.rulepack import load_rule_pack
from portal.celery import app as celery_app
from portal.registry.models import Card, Membership, Vendor
from portal.registry.roles import ADMINISTRATORS, REVIEWERS, grant
from portal.submissions.services import load_rule_packs

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def cache_in_tmp(settings, tmp_path):
    """Give each test a cache of its own. The default file cache under var/ is shared by the pytest workers
    and culls a third of its entries when full, so another worker's test could evict an entry mid-test."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                   "LOCATION": str(tmp_path / "cache")}}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The test personas need no slow password hash; each PBKDF2 hash costs about half a second of CPU."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def eager_celery():
    """Run tasks in-process even when CELERY_BROKER_URL points at a broker (the PostgreSQL run sets one)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def make_user(username: str, *, is_staff: bool = False):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=is_staff)


@pytest.fixture
def vendor(db):
    return Vendor.objects.create(slug="acme", name="Acme <b>芯片</b>")


@pytest.fixture
def other_vendor(db):
    return Vendor.objects.create(slug="globex", name="Globex")


@pytest.fixture
def reference_lab(db):
    return Vendor.objects.create(slug="reference-lab", name="Reference lab", is_reference_lab=True)


@pytest.fixture
def owner(vendor):
    user = make_user("owner")
    Membership.objects.create(vendor=vendor, user=user)
    return user


@pytest.fixture
def outsider(other_vendor):
    user = make_user("outsider")
    Membership.objects.create(vendor=other_vendor, user=user)
    return user


@pytest.fixture
def staff(db):
    """Certification staff: a reviewer who sees every submission and decides on certificates."""
    user = make_user("staff", is_staff=True)
    grant(user, REVIEWERS)
    return user


@pytest.fixture
def administrator(db):
    """A staff administrator: approves cards, manages references, vendors and staff."""
    user = make_user("administrator", is_staff=True)
    grant(user, REVIEWERS)
    grant(user, ADMINISTRATORS)
    return user


@pytest.fixture
def card(vendor):
    return Card.objects.create(vendor=vendor, model="X100", serial="sn-1", peak_tflops={"fp32": 2.0}, approved=True)


@pytest.fixture
def rule_pack(db):
    return next(pack for pack in load_rule_packs() if pack.name == "demo-2026.1")


@pytest.fixture
def certificate(vendor, card, rule_pack, staff):
    """A level 1 pretraining certificate of `card`, issued by `staff` on a judged submission."""
    from portal.certificates.services import issue_certificate

    from .helpers_verdict import judged_submission, verdict

    return issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict()), track="pretraining", level=1, issued_by=staff)


@pytest.fixture
def owner_api(owner):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    return client


def login(client, user):
    client.force_login(user)
    return client


def tar_bytes(files: dict[str, bytes] | None = None) -> bytes:
    """Build a small uncompressed tar archive in memory."""
    files = files or {"manifest.json": b"{}"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_file(data: bytes, name: str = "run.tar") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/x-tar")


# Signed bundles built from a hand-made run folder ---------------------------

def register_new_key(vendor):
    """Generate a signing key, register its public key for `vendor` and return it."""
    from certification.signing import generate_key
    from portal.registry.services import register_signing_key

    key = generate_key()
    with transaction.atomic():
        register_signing_key(vendor, key.public_pem())
    return key


def vendor_with_key(name: str, slug: str, model: str, serial: str):
    """Create a vendor with one approved card, a member user named SLUG-member and a registered signing key. Return the vendor, member and key."""
    vendor = Vendor.objects.create(slug=slug, name=name)
    Card.objects.create(vendor=vendor, model=model, serial=serial, peak_tflops={"fp32": 1.5}, approved=True)
    member = make_user(f"{slug}-member")
    Membership.objects.create(vendor=vendor, user=member)
    return vendor, member, register_new_key(vendor)


@pytest.fixture
def vendor_key(vendor):
    return register_new_key(vendor)


@pytest.fixture
def lab_key(reference_lab):
    return register_new_key(reference_lab)


def write_run_folder(root: Path, *, vendor: str = "acme", model: str = "X100", serial: str = "sn-1") -> Path:
    """Write the smallest run folder the bundle writer accepts: run metadata and one workload result."""
    pack = load_rule_pack("demo-2026.1")
    files = {
        "run.json": {
            "run_id": "run-portal-test", "profile": "cpu-demo", "rule_pack": {"name": pack.name, "sha256": pack.sha256},
            "vendor": vendor, "card": {"model": model, "serial": serial}, "tracks": ["pretraining"], "level": 1,
            "ticket": None, "agent_version": "0.1.0",
            "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:10:00+00:00",
        },
        "environment.json": {"python": "3.11", "device": "cpu", "device_count": 1, "nodes": 1},
        "workloads/pretrain-llama/result.json": {"workload": "pretrain-llama", "kind": "pretrain", "status": "completed", "summary": {}},
    }
    for relative, value in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, ensure_ascii=False) + "\n", encoding="utf-8")
    (root / "events.jsonl").write_text('{"time": "2026-01-01T00:00:00Z", "event": "start"}\n', encoding="utf-8")
    return root


def build_bundle(tmp_path: Path, key, name: str = "run.tar", **run_fields) -> Path:
    from certification.bundle import write_bundle

    run_dir = write_run_folder(tmp_path / f"{name}.run", **run_fields)
    return write_bundle(run_dir, tmp_path / name, key).path
