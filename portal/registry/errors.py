"""Errors of the vendor and staff pages for cards and keys, one code per case."""

from django.utils.translation import gettext_lazy as _

from portal.errors import ErrorSpec, PortalError

REGISTRY_ERRORS = {
    "public_key_invalid": ErrorSpec(
        400, _("The text is not an Ed25519 public key in PEM form. Paste the whole .pub file that 'python -m agent keygen' wrote.")
    ),
    "private_key_pasted": ErrorSpec(
        400, _("The text is a PRIVATE key. It was not stored, and it must not be shared with anyone, this portal included. Paste the "
               "public key instead: the .pub file next to the private key (PATH.pub after 'python -m agent keygen --out PATH'). "
               "If anyone else may have seen the private key, create a new key pair and register its .pub file.")
    ),
    "key_other_vendor": ErrorSpec(
        409, _("The key %(key_id)s is already registered for another vendor. Generate a new key pair for %(vendor)s.")
    ),
    "card_duplicate": ErrorSpec(
        409, _("The card %(model)s with serial %(serial)s is already registered. Open it in the list instead of adding it again.")
    ),
    "peaks_missing": ErrorSpec(
        400, _("No peak dense TFLOPS were given. Enter the datasheet figure for at least one data type.")
    ),
    "vendor_not_member": ErrorSpec(
        403, _("You are not a member of the vendor %(vendor)s. Choose one of your vendors.")
    ),
}


class RegistryError(PortalError):
    table = REGISTRY_ERRORS
