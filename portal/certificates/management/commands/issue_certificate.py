"""Issue a certificate from the command line, through the same service as the staff page."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from certification.credentials import payload_of
from portal.certificates.errors import CertificateError
from portal.certificates.models import Certificate
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
        parser.add_argument("--existing-ok", action="store_true", help="when the card already holds this certificate, report it instead of failing")
        parser.add_argument("--json", action="store_true", help="print the certificate as one JSON line")

    def handle(self, *args, **options):
        staff = get_user_model().objects.filter(username=options["staff_user"]).first()
        if staff is None:
            raise CommandError(f"user {options['staff_user']!r} not found; pass --staff-user")
        try:
            card = find_card(options["card"])
            certificate = self.issue(card, options, staff)
        except CertificateError as error:
            raise CommandError(f"{error.detail} [{error.code}]") from None
        if options["json"]:
            self.stdout.write(json.dumps(certificate_summary(certificate), ensure_ascii=False))
        else:
            self.stdout.write(f"certificate {certificate.number} for {card}, {certificate.track} level {certificate.level}")

    def issue(self, card: Card, options, staff) -> Certificate:
        track, level = options["track"], options["level"]
        submission = passing_submission(card, track, level)
        try:
            return issue_certificate(submission=submission, track=track, level=level, issued_by=staff)
        except CertificateError as error:
            if error.code != "already_certified" or not options["existing_ok"]:
                raise
        return Certificate.objects.active().get(card=card, track=track, level=level, rule_pack=submission.rule_pack)


def certificate_summary(certificate: Certificate) -> dict:
    return {
        "number": certificate.number,
        "card": str(certificate.card),
        "track": certificate.track,
        "level": certificate.level,
        "rule_pack": certificate.rule_pack.name,
        "verify_url": reverse("certificate-detail", args=[certificate.number]),
        "pdf_url": reverse("certificate-pdf", args=[certificate.number]),
        # The public link signed into the credential when the certificate was issued; later base URLs do not change it.
        "credential_url": payload_of(certificate.credential).get("verification_url", "") if certificate.credential else "",
    }
