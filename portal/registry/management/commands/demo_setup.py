"""Create the demo's staff user, vendor, member, card, keys and rule packs; safe to run again."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from certification.signing import SigningError
from portal.audit.services import record
from portal.registry.errors import RegistryError
from portal.registry.models import Card, Membership, Vendor
from portal.registry.roles import ADMINISTRATORS, REVIEWERS, grant
from portal.registry.services import register_signing_key
from portal.submissions.services import load_rule_packs

REFERENCE_LAB = {"slug": "reference-lab", "name": "认证参考实验室 Reference lab"}


class Command(BaseCommand):
    help = "Set up the CPU demo: staff user, vendor with a member and API token, approved card, keys, rule packs. Prints JSON."

    def add_arguments(self, parser):
        parser.add_argument("--vendor-key", type=Path, help="public key PEM file of the demo vendor (from `python -m agent keygen`)")
        parser.add_argument("--reference-key", type=Path, help="public key PEM file of the reference lab")
        parser.add_argument("--vendor", default="demo-vendor", help="vendor identifier, as the agent writes it in bundles")
        parser.add_argument("--vendor-name", default="演示厂商 Demo Vendor", help="vendor name shown on pages and certificates")
        parser.add_argument("--card-model", default="CPU demo card", help="card model, as the agent writes it in bundles")
        parser.add_argument("--card-serial", default="cpu-demo-0", help="card serial, as the agent writes it in bundles")
        parser.add_argument("--peak-fp32", type=float, default=1.0, help="registered peak dense fp32 TFLOPS of the demo card")
        parser.add_argument("--staff-user", default="staff", help="user name of the staff account")
        parser.add_argument("--member-user", default="vendor", help="user name of the vendor member")
        parser.add_argument("--password", default="demo-password", help="password of both demo accounts")

    def handle(self, *args, **options):
        try:
            result = self.set_up(options)
        except (SigningError, RegistryError, ValueError) as error:
            raise CommandError(f"{error}; pass the .pub file that `python -m agent keygen` wrote") from error
        self.stdout.write(json.dumps(result, ensure_ascii=False, indent=2))

    @transaction.atomic
    def set_up(self, options) -> dict:
        staff = self.user(options["staff_user"], options["password"], is_staff=True)
        for role in (REVIEWERS, ADMINISTRATORS):
            grant(staff, role)
        member = self.user(options["member_user"], options["password"], is_staff=False)
        vendor, _ = Vendor.objects.get_or_create(slug=options["vendor"], defaults={"name": options["vendor_name"]})
        Membership.objects.get_or_create(vendor=vendor, user=member)
        lab, _ = Vendor.objects.get_or_create(slug=REFERENCE_LAB["slug"], defaults={"name": REFERENCE_LAB["name"], "is_reference_lab": True})
        card = self.card(vendor, options, staff)
        keys = self.keys(vendor, lab, options, staff)
        packs = load_rule_packs(actor=staff)
        token, _ = Token.objects.get_or_create(user=member)
        return {
            "staff_user": staff.get_username(), "member_user": member.get_username(), "token": token.key,
            "vendor": {"id": vendor.pk, "slug": vendor.slug}, "reference_lab": {"id": lab.pk, "slug": lab.slug},
            "card": {"id": card.pk, "model": card.model, "serial": card.serial, "peak_tflops": card.peak_tflops},
            "keys": keys, "rule_packs": [pack.name for pack in packs],
        }

    def user(self, username: str, password: str, *, is_staff: bool):
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": is_staff})
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def card(self, vendor, options, staff) -> Card:
        card, created = Card.objects.get_or_create(
            vendor=vendor, model=options["card_model"], serial=options["card_serial"],
            defaults={
                "peak_tflops": {"fp32": options["peak_fp32"]}, "approved": True, "approved_by": staff, "approved_at": timezone.now(),
                "peak_source": "CPU demo: nominal figure set by demo_setup --peak-fp32, not a datasheet",
            },
        )
        if created:
            record("card.registered", card, actor=staff, data={"peak_tflops": card.peak_tflops, "approved": True})
        return card

    def keys(self, vendor, lab, options, staff) -> dict:
        registered = {}
        for owner, path in ((vendor, options["vendor_key"]), (lab, options["reference_key"])):
            if path is not None:
                key = register_signing_key(owner, path.read_text(encoding="ascii"), actor=staff)
                registered[owner.slug] = key.key_id
        return registered
