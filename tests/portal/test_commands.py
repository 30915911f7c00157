"""The management commands demo_setup and add_reference."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.registry.models import Card, SigningKey, Vendor
from portal.submissions.models import ReferenceBundle, RulePack

from .conftest import build_bundle


def run_demo_setup(tmp_path, *extra):
    out = StringIO()
    call_command("demo_setup", *extra, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def key_files(tmp_path):
    from certification.signing import generate_key, save_public_key

    keys = {"vendor": generate_key(), "lab": generate_key()}
    for name, key in keys.items():
        save_public_key(key, tmp_path / f"{name}.pub")
    return keys


def test_demo_setup_is_idempotent(db, tmp_path, key_files):
    arguments = ["--vendor-key", str(tmp_path / "vendor.pub"), "--reference-key", str(tmp_path / "lab.pub")]
    first = run_demo_setup(tmp_path, *arguments)
    second = run_demo_setup(tmp_path, *arguments)
    assert first == second
    assert "demo-2026.1" in first["rule_packs"]
    assert first["keys"] == {"demo-vendor": key_files["vendor"].key_id, "reference-lab": key_files["lab"].key_id}
    assert Vendor.objects.count() == 2
    assert SigningKey.objects.count() == 2
    card = Card.objects.get(pk=first["card"]["id"])
    assert card.approved
    assert card.approved_by is not None
    assert card.approved_at is not None
    assert card.peak_tflops == {"fp32": 1.0}
    assert len(first["token"]) == 40


@pytest.mark.parametrize("profile_name", ["demo", "smoke", "demo-sd", "smoke-sd", "tiny"])
def test_demo_setup_registers_profile_card(db, tmp_path, profile_name):
    # A bundle of a demo profile uploads to the demo portal without --vendor or --card-serial.
    from agent.runner.profiles import load_profile

    profile = load_profile(profile_name)
    setup = run_demo_setup(tmp_path)

    assert profile.vendor == setup["vendor"]["slug"]
    assert (profile.card_model, profile.card_serial) == (setup["card"]["model"], setup["card"]["serial"])


def test_demo_setup_rejects_bad_key_file(db, tmp_path):
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(CommandError):
        run_demo_setup(tmp_path, "--vendor-key", str(tmp_path / "bad.pub"))


def test_add_reference_command(tmp_path, rule_pack, lab_key, staff):
    path = build_bundle(tmp_path, lab_key, name="reference.tar", vendor="reference-lab")
    out = StringIO()
    call_command("add_reference", str(path), "--rule-pack", "demo-2026.1", "--peak", "fp32=1.5", stdout=out)
    reference = ReferenceBundle.objects.get()
    assert reference.peak_tflops == {"fp32": 1.5}
    assert reference.label == "CPU demo reference"
    assert "added" in out.getvalue()


@pytest.mark.parametrize("arguments, message", [
    (["--rule-pack", "nope-1", "--peak", "fp32=1"], "not loaded"),
    (["--rule-pack", "demo-2026.1", "--peak", "fp32"], "DTYPE=TFLOPS"),
])
def test_add_reference_bad_arguments(tmp_path, rule_pack, lab_key, staff, arguments, message):
    path = build_bundle(tmp_path, lab_key, name="reference.tar")
    with pytest.raises(CommandError, match=message):
        call_command("add_reference", str(path), *arguments)


def test_rule_pack_is_stored_verbatim(rule_pack):
    from certification.rulepack import load_rule_pack

    shipped = load_rule_pack("demo-2026.1")
    assert RulePack.objects.get(name="demo-2026.1").sha256 == shipped.sha256
    assert rule_pack.text == shipped.text
    assert rule_pack.reference_kind == "cpu-demo"
