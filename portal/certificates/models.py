"""Certificates and the counter their numbers come from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.registry.models import Card
from portal.submissions.models import RulePack, Submission

LEVEL_NUMERALS = {1: "I", 2: "II", 3: "III"}


class Track(models.TextChoices):
    FINETUNING = "finetuning", _("fine-tuning")
    PRETRAINING = "pretraining", _("pretraining")
    INFERENCE = "inference", _("inference")
    DPO = "dpo", _("DPO")


class CertificateSequence(models.Model):
    """The last certificate number issued in a year; its row is locked while a number is taken."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)


class CertificateQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class Certificate(models.Model):
    number = models.CharField(_("number"), max_length=32, unique=True)
    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="certificates")
    track = models.CharField(_("track"), max_length=16, choices=Track.choices)
    level = models.PositiveSmallIntegerField(_("level"))
    rule_pack = models.ForeignKey(RulePack, on_delete=models.PROTECT, related_name="certificates")
    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="certificates")
    key_figures = models.JSONField(_("key figures"), default=list, blank=True)
    issued_at = models.DateTimeField(_("issued at"))
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_reason = models.TextField(_("revocation reason"), blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    credential = models.JSONField(_("signed credential"), null=True, blank=True, help_text=_("DSSE envelope signed by the portal's credential key"))
    # Set once at issue and signed into the credential. The PDF's QR code and link print it, so a later
    # PORTAL_BASE_URL changes neither. It is root-relative when PORTAL_BASE_URL was unset at issue.
    verification_url = models.CharField(_("verification link"), max_length=500, blank=True,
                                        help_text=_("public link to this certificate, as signed into its credential"))
    needs_review = models.BooleanField(_("needs review"), default=False, help_text=_("set when the key that signed its bundle was revoked after a compromise"))
    review_reason = models.TextField(_("review reason"), blank=True)

    objects = CertificateQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at", "-id"]
        verbose_name = _("certificate")
        verbose_name_plural = _("certificates")
        constraints = [
            models.UniqueConstraint(
                fields=["card", "track", "level", "rule_pack"],
                condition=models.Q(revoked_at__isnull=True),
                name="certificate_one_active_per_scope",
            )
        ]

    def __str__(self):
        return self.number

    @property
    def level_numeral(self) -> str:
        return LEVEL_NUMERALS.get(self.level, str(self.level))

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def figures(self) -> list[dict]:
        """Return the key figures formatted in the active language."""
        from portal.certificates.figures import display_figures

        return display_figures(self.key_figures)

    def flag_for_review(self, reason: str) -> None:
        """Mark the certificate for staff review, keeping the first reason when it is flagged again."""
        self.needs_review = True
        self.review_reason = self.review_reason or reason
        self.save(update_fields=["needs_review", "review_reason"])


class CredentialKey(models.Model):
    """A public key the portal signs credentials with, or signed them with before a rotation.

    The private key of the current one is the file PORTAL_CREDENTIAL_KEY_PATH;
    retired keys keep only their public key here, so old credentials still verify.
    """

    key_id = models.CharField(_("key id"), max_length=64, unique=True)
    public_pem = models.TextField(_("public key (PEM)"))
    created_at = models.DateTimeField(_("first used"), auto_now_add=True)
    retired_at = models.DateTimeField(_("retired at"), null=True, blank=True)
    compromised_at = models.DateTimeField(
        _("marked compromised at"), null=True, blank=True, help_text=_("set when its private key may be known to others; credentials it signed are no longer trusted")
    )
    compromised_reason = models.TextField(_("compromise reason"), blank=True)
    compromised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("credential key")
        verbose_name_plural = _("credential keys")

    def __str__(self):
        return self.key_id

    @property
    def is_compromised(self) -> bool:
        return self.compromised_at is not None


class ListingVersion(models.Model):
    """One row whose random token changes in the same transaction as any change the public listing shows.

    Cached listing pages are keyed by the token, so a commit that issues or
    revokes a certificate makes every cached page unreachable at once. A fresh
    database starts with a new random token, so two databases never share keys.
    """

    token = models.CharField(max_length=32)
