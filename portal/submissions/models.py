"""Rule packs, reference bundles, vendor submissions and their validation reports."""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.registry.models import Card, Vendor

REFERENCE_KIND_LABELS = {
    "cpu-demo": _("CPU demo reference"),
    "a800": _("A800 reference"),
}


def reference_kind_label(kind: str) -> str:
    return REFERENCE_KIND_LABELS.get(kind, kind)


class RulePack(models.Model):
    """A published rule pack, stored with its exact YAML text and hash."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    sha256 = models.CharField(_("sha256"), max_length=64)
    text = models.TextField(_("YAML text"))
    reference_kind = models.CharField(_("reference kind"), max_length=32)
    loaded_at = models.DateTimeField(_("loaded"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("rule pack")
        verbose_name_plural = _("rule packs")

    def __str__(self):
        return self.name

    @property
    def reference_label(self) -> str:
        return reference_kind_label(self.reference_kind)

    def parsed(self):
        from certification.rulepack import parse_rule_pack

        return parse_rule_pack(self.text.encode("utf-8"))


def bundle_upload_path(instance, filename: str) -> str:
    return f"bundles/{instance.vendor.slug}/{instance.sha256}.tar"


def reference_upload_path(instance, filename: str) -> str:
    return f"references/{instance.rule_pack.name}/{instance.sha256}.tar"


class ReferenceBundle(models.Model):
    """A reference run of a rule pack (A800, or a CPU run for the demo pack) that vendors are compared with."""

    rule_pack = models.ForeignKey(RulePack, on_delete=models.PROTECT, related_name="references")
    bundle = models.FileField(_("bundle"), upload_to=reference_upload_path)
    sha256 = models.CharField(_("sha256"), max_length=64)
    peak_tflops = models.JSONField(_("reference card peak dense TFLOPS"), default=dict)
    label = models.CharField(_("label"), max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["rule_pack", "created_at"]
        verbose_name = _("reference bundle")
        verbose_name_plural = _("reference bundles")
        constraints = [models.UniqueConstraint(fields=["rule_pack", "sha256"], name="reference_unique_digest")]

    def __str__(self):
        return f"{self.rule_pack} {self.label} {self.sha256[:12]}"


class Submission(models.Model):
    """One uploaded bundle. States: received -> validating -> judged | rejected."""

    class State(models.TextChoices):
        RECEIVED = "received", _("received")
        VALIDATING = "validating", _("validating")
        JUDGED = "judged", _("judged")
        REJECTED = "rejected", _("rejected")

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="submissions")
    card = models.ForeignKey(Card, on_delete=models.PROTECT, null=True, blank=True, related_name="submissions")
    rule_pack = models.ForeignKey(RulePack, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    bundle = models.FileField(_("bundle"), upload_to=bundle_upload_path)
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    sha256 = models.CharField(_("sha256"), max_length=64)
    size = models.BigIntegerField(_("size in bytes"))
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.RECEIVED)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("submission")
        verbose_name_plural = _("submissions")
        permissions = [("review_submission", "Can see every submission, the queue and the audit log")]
        constraints = [models.UniqueConstraint(fields=["vendor", "sha256"], name="submission_unique_digest")]

    def __str__(self):
        return f"#{self.pk} {self.vendor} {self.sha256[:12]} ({self.state})"

    def is_visible_to(self, user) -> bool:
        from portal.permissions import is_reviewer

        return user.is_authenticated and (is_reviewer(user) or self.vendor.has_member(user))


class ReportOutcome(models.Model):
    """The verdict of one validation, or the reason it rejected the bundle. Current and superseded reports share these fields."""

    verdict = models.JSONField(_("verdict"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_params = models.JSONField(_("error parameters"), default=dict, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    error_hint = models.TextField(_("hint"), blank=True)

    class Meta:
        abstract = True

    @property
    def criteria(self) -> list[dict]:
        return (self.verdict or {}).get("criteria", [])

    @property
    def error_detail(self) -> str:
        """Return the rejection reason in the active language: what failed, on which value, and what to do."""
        from portal.submissions.errors import SUBMISSION_ERRORS
        from portal.submissions.rejections import StoredParams, rejection_message

        spec = SUBMISSION_ERRORS.get(self.error_code)
        if spec is not None:
            return str(spec.message) % StoredParams(self.error_params)
        return rejection_message(self.error_code, self.error_params) or self.error_message

    @property
    def error_hint_text(self) -> str:
        """Return the stored English hint only for a code without a portal sentence; the sentence already tells the vendor what to do."""
        from portal.submissions.errors import SUBMISSION_ERRORS
        from portal.submissions.rejections import REJECTION_MESSAGES

        return "" if self.error_code in SUBMISSION_ERRORS or self.error_code in REJECTION_MESSAGES else self.error_hint

    def track_level(self, track: str) -> int:
        """Return the level the verdict grants for `track`, 0 when none."""
        return int(((self.verdict or {}).get("tracks", {}).get(track) or {}).get("level", 0))


class ValidationReport(ReportOutcome):
    """The outcome of validating one submission: the verdict, or why the bundle was rejected."""

    submission = models.OneToOneField(Submission, on_delete=models.PROTECT, related_name="report")
    series = models.JSONField(
        _("plot series"), default=dict, blank=True, help_text=_("per workload: loss and throughput by step, read from the bundles")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("validation report")
        verbose_name_plural = _("validation reports")

    def __str__(self):
        return f"report of {self.submission_id}"


class SupersededReport(ReportOutcome):
    """A validation report that "validate again" replaced, kept whole with its times, the staff member who replaced it and the rule pack.

    The plot series are not kept, because they can be read again from the stored bundle.
    """

    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="superseded_reports")
    state = models.CharField(_("state"), max_length=16, choices=Submission.State.choices)
    rule_pack = models.ForeignKey(RulePack, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    rule_pack_sha256 = models.CharField(_("rule pack sha256"), max_length=64, blank=True)
    judged_at = models.DateTimeField(_("judged"))
    superseded_at = models.DateTimeField(_("replaced"))
    superseded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-superseded_at", "-id"]
        verbose_name = _("superseded validation report")
        verbose_name_plural = _("superseded validation reports")

    def __str__(self):
        return f"report of {self.submission_id} replaced {self.superseded_at:%Y-%m-%d %H:%M}"

    @property
    def outcome_json(self) -> str:
        """Return the stored verdict, or the rejection code and parameters, as indented JSON for the staff page."""
        if self.error_code:
            outcome = {"error_code": self.error_code, "error_params": self.error_params, "error_message": self.error_message, "error_hint": self.error_hint}
        else:
            outcome = self.verdict
        return json.dumps(outcome, ensure_ascii=False, indent=2, sort_keys=True)


def upload_session_path(session) -> str:
    return f"partial/{session.pk}.part"


class UploadSession(models.Model):
    """A resumable upload: the agent declares size and digest, sends byte ranges, then completes it."""

    class State(models.TextChoices):
        OPEN = "open", _("open")
        COMPLETED = "completed", _("completed")
        EXPIRED = "expired", _("expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="upload_sessions")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(_("file name"), max_length=255, blank=True)
    size = models.BigIntegerField(_("size in bytes"))
    sha256 = models.CharField(_("sha256"), max_length=64)
    received = models.BigIntegerField(_("bytes received"), default=0)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.OPEN)
    submission = models.ForeignKey(Submission, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("upload session")
        verbose_name_plural = _("upload sessions")
        constraints = [
            models.UniqueConstraint(
                fields=["vendor", "sha256"], condition=models.Q(state="open"), name="upload_session_one_open_per_digest"
            )
        ]

    def __str__(self):
        return f"upload {self.pk} {self.received}/{self.size}"

    @property
    def partial_path(self):
        from pathlib import Path

        return Path(settings.MEDIA_ROOT) / upload_session_path(self)

    def is_stale(self, now) -> bool:
        """Return whether the upload is open and received nothing for BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS."""
        from datetime import timedelta

        lifetime = timedelta(hours=settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS)
        return self.state == self.State.OPEN and self.updated_at < now - lifetime
