"""Issue a certificate from the command line, through the same service as the staff page."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.certificates.errors import CertificateError
from portal.certificates.services import issue_certificate, passing_submission
from portal.registry.models import Card


def find_card(text: str) -> Card:
    """Find a card by id, or by VENDOR/MODEL."""
    if text.isdigit():
        card = Card.objects.filter(pk=int(text)).first()
    else:
        vendor, _, model = text.partition("/")
        card = Card.objects.filter(vendor__slug=vendor, model=model).first()
    if card is None:
        raise CertificateError("card_not_found", card=text)
    return card


class Command(BaseCommand):
    help = "Issue a certificate for a card, track and level that the newest passing verdict grants."

    def add_arguments(self, parser):
        parser.add_argument("--card", required=True, help="card id, or VENDOR/MODEL")
        parser.add_argument("--track", required=True, help="finetuning, pretraining, inference or dpo")
        parser.add_argument("--level", type=int, required=True, help="level 1, 2 or 3")
        parser.add_argument("--staff-user", default="staff", help="staff user who issues it")

    def handle(self, *args, **options):
        staff = get_user_model().objects.filter(username=options["staff_user"]).first()
        if staff is None:
            raise CommandError(f"user {options['staff_user']!r} not found; pass --staff-user")
        try:
            card = find_card(options["card"])
            submission = passing_submission(card, options["track"], options["level"])
            certificate = issue_certificate(submission=submission, track=options["track"], level=options["level"], issued_by=staff)
        except CertificateError as error:
            raise CommandError(f"{error.detail} [{error.code}]") from None
        self.stdout.write(f"certificate {certificate.number} issued for {card}, {certificate.track} level {certificate.level}")
