"""Rotate the portal's credential key: sign new credentials with a new key, keep verifying the old ones."""

from django.core.management.base import BaseCommand

from portal.certificates.credentials import rotate_credential_key
from portal.certificates.management.commands._staff import optional_staff_user


class Command(BaseCommand):
    help = (
        "Create a new credential signing key and retire the current one. Credentials signed by the old key keep "
        "verifying through its public key, which stays published in /certificates/credential/keys.json."
    )

    def add_arguments(self, parser):
        parser.add_argument("--staff-user", default="", help="staff user recorded in the audit log as the one who rotated (default: the system)")

    def handle(self, *args, **options):
        actor = optional_staff_user(options["staff_user"])
        rotation = rotate_credential_key(actor=actor)
        self.stdout.write(f"new credential key {rotation.new_key_id}; retired {rotation.old_key_id}")
        self.stdout.write(f"the retired private key is {rotation.retired_file}: it signs nothing any more, so store it offline or delete it")
