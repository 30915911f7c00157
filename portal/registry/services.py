"""Registry workflows: keys and the keyrings the bundle pipeline verifies against."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from certification.signing import Keyring, SigningError, load_public_key
from portal.audit.services import record
from portal.registry.errors import RegistryError
from portal.registry.models import Card, Membership, SigningKey, Vendor
from portal.registry.private_keys import looks_like_private_key


@transaction.atomic
def register_signing_key(vendor: Vendor, public_key_pem: str, *, actor=None, remote_addr: str | None = None) -> SigningKey:
    """Register a vendor's public key under its computed key id; registering it again is a no-op.

    The key is valid from now; `rotate_signing_key` in portal.registry.keys closes the older keys' windows.
    """
    from portal.registry.keys import whole_second_now

    if looks_like_private_key(public_key_pem):
        raise RegistryError("private_key_pasted")
    try:
        public_key = load_public_key(public_key_pem)
    except SigningError:
        raise RegistryError("public_key_invalid") from None
    key, created = SigningKey.objects.get_or_create(
        key_id=public_key.key_id,
        defaults={"vendor": vendor, "public_key_pem": public_key.public_pem(), "valid_from": whole_second_now()},
    )
    if key.vendor_id != vendor.pk:
        raise RegistryError("key_other_vendor", key_id=key.key_id, vendor=vendor.slug)
    if created:
        record("signing_key.registered", key, actor=actor, remote_addr=remote_addr, data={"vendor": vendor.slug, "key_id": key.key_id})
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


@transaction.atomic
def register_card(vendor: Vendor, *, actor, remote_addr: str | None = None, **fields) -> Card:
    """Register a card of `vendor`; its peaks wait for staff approval before any verdict uses them."""
    if not fields.get("peak_tflops"):
        raise RegistryError("peaks_missing")
    if Card.objects.filter(vendor=vendor, model=fields["model"], serial=fields["serial"]).exists():
        raise RegistryError("card_duplicate", model=fields["model"], serial=fields["serial"])
    card = Card.objects.create(vendor=vendor, approved=False, **fields)
    record("card.registered", card, actor=actor, remote_addr=remote_addr, data={
        "vendor": vendor.slug, "model": card.model, "serial": card.serial,
        "peak_tflops": card.peak_tflops, "peak_source": card.peak_source,
    })
    return card


@transaction.atomic
def approve_card(card_id: int, *, actor, remote_addr: str | None = None) -> Card:
    """Mark a card's peaks as checked by staff; approving it again changes nothing."""
    card = Card.objects.select_for_update().get(pk=card_id)
    if card.approved:
        return card
    card.approved, card.approved_by, card.approved_at = True, actor, timezone.now()
    card.save(update_fields=["approved", "approved_by", "approved_at"])
    record("card.approved", card, actor=actor, remote_addr=remote_addr, data={
        "peak_tflops": card.peak_tflops, "peak_source": card.peak_source,
    })
    return card
