"""Vendors, their members, their cards and their signing keys."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Vendor(models.Model):
    """A card vendor, or the reference lab that produces the reference bundles."""

    slug = models.SlugField(
        _("identifier"), max_length=64, unique=True, help_text=_("the vendor name written in bundles by the agent")
    )
    name = models.CharField(_("name"), max_length=200)
    is_reference_lab = models.BooleanField(
        _("reference lab"), default=False, help_text=_("its keys sign reference bundles, not vendor submissions")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("vendor")
        verbose_name_plural = _("vendors")
        permissions = [("administer_portal", "Can manage rule packs, references, vendors and staff")]

    def __str__(self):
        return self.name

    def has_member(self, user) -> bool:
        return user.is_authenticated and self.memberships.filter(user=user).exists()


class Membership(models.Model):
    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vendor_memberships")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["vendor", "user"], name="membership_unique_user")]

    def __str__(self):
        return f"{self.user} @ {self.vendor}"


class Card(models.Model):
    """An accelerator card model with its registered peak dense TFLOPS per data type."""

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="cards")
    model = models.CharField(_("card model"), max_length=200)
    serial = models.CharField(_("serial"), max_length=200)
    peak_tflops = models.JSONField(
        _("peak dense TFLOPS"), default=dict, help_text=_('per data type, for example {"bf16": 312, "fp32": 19.5}')
    )
    peak_source = models.CharField(_("datasheet source"), max_length=500, blank=True)
    memory_gib = models.PositiveIntegerField(_("memory (GiB)"), null=True, blank=True)
    interconnect = models.CharField(_("interconnect"), max_length=200, blank=True, help_text=_("for example: 8 cards, 400 GB/s per card"))
    approved = models.BooleanField(_("approved"), default=False, help_text=_("staff checked the peaks"))
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    approved_at = models.DateTimeField(_("approved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["vendor__name", "model"]
        verbose_name = _("card")
        verbose_name_plural = _("cards")
        permissions = [("approve_card", "Can approve the peak TFLOPS of a card")]
        constraints = [models.UniqueConstraint(fields=["vendor", "model", "serial"], name="card_unique_serial")]

    def __str__(self):
        return f"{self.vendor} {self.model}"

    def peaks(self) -> dict[str, float]:
        return {dtype: float(value) for dtype, value in self.peak_tflops.items()}


class SigningKeyQuerySet(models.QuerySet):
    def usable(self, at=None):
        """Keys that are not revoked and are inside their validity window at `at` (default now)."""
        at = at or timezone.now()
        window = models.Q(valid_until__isnull=True) | models.Q(valid_until__gt=at)
        return self.filter(revoked_at__isnull=True, valid_from__lte=at).filter(window)


class SigningKey(models.Model):
    """An Ed25519 public key of a vendor (or of the reference lab) that signs bundles."""

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="signing_keys")
    key_id = models.CharField(_("key id"), max_length=128, unique=True)
    public_key_pem = models.TextField(_("public key (PEM)"))
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = SigningKeyQuerySet.as_manager()

    class Meta:
        ordering = ["vendor__name", "key_id"]
        verbose_name = _("signing key")
        verbose_name_plural = _("signing keys")

    def __str__(self):
        return f"{self.vendor} {self.key_id}"
