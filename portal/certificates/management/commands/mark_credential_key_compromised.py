"""Mark a retired credential key compromised: credentials it signed stop verifying, and the certificates get new ones."""

from django.core.management.base import BaseCommand, CommandError

from portal.certificates.credentials import mark_key_compromised, shown_time
from portal.certificates.errors import CertificateError
from portal.certificates.management.commands._staff import optional_staff_user


class Command(BaseCommand):
    help = (
        "Mark a retired credential signing key compromised, with a public reason. Credentials signed only by it then "
        "fail verification, keys.json lists it as compromised, and every certificate whose stored credential it signed "
        "is signed again with the current key. Rotate first if the current key is the compromised one."
    )

    def add_arguments(self, parser):
        parser.add_argument("key_id", help="key id from /certificates/credential/keys.json, or a unique prefix of at least 8 characters")
        parser.add_argument("--reason", required=True, help="why the key is no longer trusted; shown publicly in keys.json and on the verification page")
        parser.add_argument("--staff-user", default="", help="staff user recorded in the audit log as the one who marked it (default: the system)")

    def handle(self, *args, **options):
        actor = optional_staff_user(options["staff_user"])
        try:
            compromise = mark_key_compromised(options["key_id"], reason=options["reason"], actor=actor)
        except CertificateError as error:
            raise CommandError(f"{error.detail} [{error.code}]") from None
        self.stdout.write(f"credential key {compromise.key_id} marked compromised at {shown_time(compromise.compromised_at)}")
        numbers = ", ".join(compromise.resigned) or "none"
        self.stdout.write(f"credentials signed again with {compromise.current_key_id}: {numbers}")
