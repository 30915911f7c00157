"""Mark a reference bundle (signed by the reference lab) as a reference of a rule pack."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.errors import PortalError
from portal.submissions.models import RulePack
from portal.submissions.services import add_reference


def parse_peak(text: str) -> tuple[str, float]:
    dtype, _, value = text.partition("=")
    try:
        return dtype.strip(), float(value)
    except ValueError:
        raise CommandError(f"--peak {text!r} is invalid; write DTYPE=TFLOPS, for example fp32=1.5") from None


class Command(BaseCommand):
    help = "Verify BUNDLE with the reference lab's keys and mark it as a reference of a rule pack."

    def add_arguments(self, parser):
        parser.add_argument("bundle", type=Path, help="the reference .tar bundle")
        parser.add_argument("--rule-pack", required=True, help="rule pack name, for example demo-2026.1")
        parser.add_argument("--peak", action="append", required=True, help="peak dense TFLOPS of the reference card as DTYPE=TFLOPS; repeat per data type")
        parser.add_argument("--staff-user", default="staff", help="staff user recorded as the one who added it")

    def handle(self, *args, **options):
        rule_pack = RulePack.objects.filter(name=options["rule_pack"]).first()
        if rule_pack is None:
            known = ", ".join(RulePack.objects.values_list("name", flat=True)) or "none; run demo_setup first"
            raise CommandError(f"rule pack {options['rule_pack']!r} is not loaded; loaded: {known}")
        if not options["bundle"].is_file():
            raise CommandError(f"bundle file {options['bundle']} not found")
        staff = get_user_model().objects.filter(username=options["staff_user"], is_staff=True).first()
        if staff is None:
            raise CommandError(f"staff user {options['staff_user']!r} not found; pass --staff-user")

        peaks = dict(parse_peak(text) for text in options["peak"])
        try:
            reference, created = add_reference(options["bundle"], rule_pack=rule_pack, peak_tflops=peaks, actor=staff)
        except PortalError as error:
            raise CommandError(f"{error.detail} [{error.code}]") from None
        verb = "added" if created else "already present"
        self.stdout.write(f"reference {reference.sha256} {verb}: rule pack {rule_pack.name}, {reference.label}, peaks {peaks}")
