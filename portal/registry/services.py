"""Registry workflows: keys and the keyrings the bundle pipeline verifies against."""

from __future__ import annotations

from django.db import transaction

from certification.signing import Keyring, load_public_key
from portal.audit.services import record
from portal.registry.models import Membership, SigningKey, Vendor


@transaction.atomic
def register_signing_key(vendor: Vendor, public_key_pem: str, *, actor=None) -> SigningKey:
    """Register a vendor's public key under its computed key id; registering it again is a no-op.

    The key is valid from now; `rotate_signing_key` in portal.registry.keys closes the older keys' windows.
    """
    from portal.registry.keys import whole_second_now

    public_key = load_public_key(public_key_pem)
    key, created = SigningKey.objects.get_or_create(
        key_id=public_key.key_id,
        defaults={"vendor": vendor, "public_key_pem": public_key.public_pem(), "valid_from": whole_second_now()},
    )
    if key.vendor_id != vendor.pk:
        raise ValueError(f"key {key.key_id} is already registered for vendor {key.vendor.slug}")
    if created:
        record("signing_key.registered", key, actor=actor, data={"vendor": vendor.slug, "key_id": key.key_id})
    return key


def keyring_for_vendor(vendor: Vendor) -> Keyring:
    """Build the keyring of every key the vendor ever registered, each with its validity window."""
    from portal.registry.keys import keyring_of

    return keyring_of(vendor.signing_keys.all())


def reference_keyring() -> Keyring:
    from portal.registry.keys import keyring_of

    return keyring_of(SigningKey.objects.filter(vendor__is_reference_lab=True))


def vendors_of(user) -> list[Vendor]:
    if not user.is_authenticated:
        return []
    return [membership.vendor for membership in Membership.objects.filter(user=user).select_related("vendor")]
