"""Run tickets: one-time, portal-signed permissions to run one certification on one card."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.registry.models import Card, Vendor
from portal.submissions.models import RulePack, Submission


class RunTicket(models.Model):
    """A ticket the portal signed. `used_by` is set once, by the first submission that carries it."""

    ticket_id = models.CharField(_("ticket id"), max_length=32, unique=True)
    nonce = models.CharField(_("nonce"), max_length=64, unique=True)
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="run_tickets")
    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="run_tickets")
    track = models.CharField(_("track"), max_length=16)
    level = models.PositiveSmallIntegerField(_("level"))
    rule_pack = models.ForeignKey(RulePack, on_delete=models.PROTECT, related_name="+")
    envelope = models.JSONField(_("signed ticket"))
    issued_at = models.DateTimeField(_("issued at"))
    expires_at = models.DateTimeField(_("expires at"))
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    used_by = models.OneToOneField(Submission, on_delete=models.PROTECT, null=True, blank=True, related_name="run_ticket")
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        verbose_name = _("run ticket")
        verbose_name_plural = _("run tickets")

    def __str__(self):
        return f"{self.vendor} {self.card.model} {self.track} {self.level} {self.ticket_id[:8]}"

    @property
    def is_used(self) -> bool:
        return self.used_by_id is not None

    @property
    def is_expired(self) -> bool:
        return timezone.now() > self.expires_at
