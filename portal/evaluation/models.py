"""Blind GSB pairs, reviewers' judgements, adjudications, sign-offs and the verdicts re-judged with them.

Outcomes are stored from the vendor's point of view (good: the vendor output
is better than the reference output). Reviewers never see which side is the
vendor's: they judge the left output against the right one, and the portal
converts that with the pair's stored side.
"""

from __future__ import annotations

import random

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.submissions.models import Submission


class Outcome(models.TextChoices):
    GOOD = "good", _("Good")
    SAME = "same", _("Same")
    BAD = "bad", _("Bad")


class Side(models.TextChoices):
    LEFT = "left", _("left")
    RIGHT = "right", _("right")


class ImmutableError(RuntimeError):
    """Raised on any attempt to change or delete a sign-off."""


class EvaluationSet(models.Model):
    """The blind pairs of one human_gsb criterion of one submission."""

    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="evaluation_sets")
    criterion_id = models.CharField(_("criterion"), max_length=100)
    workload = models.CharField(_("workload"), max_length=100)
    media = models.CharField(_("media"), max_length=16, default="text")
    seed = models.BigIntegerField(_("side seed"), help_text=_("decides which side shows the vendor output, per pair"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("evaluation set")
        verbose_name_plural = _("evaluation sets")
        constraints = [models.UniqueConstraint(fields=["submission", "criterion_id"], name="evaluation_set_unique_criterion")]

    def __str__(self):
        return f"{self.criterion_id} of submission {self.submission_id}"

    def current_sign_off(self) -> SignOff | None:
        return self.sign_offs.order_by("-created_at", "-id").first()


def vendor_side_for(seed: int, position: int) -> str:
    """Return the side that shows the vendor output of pair `position`, reproducible from the stored seed."""
    return Side.LEFT if random.Random(f"{seed}:{position}").random() < 0.5 else Side.RIGHT


class Pair(models.Model):
    """One prompt with the vendor output and the reference output on randomised sides."""

    evaluation_set = models.ForeignKey(EvaluationSet, on_delete=models.CASCADE, related_name="pairs")
    position = models.PositiveIntegerField(_("position"))
    prompt_id = models.CharField(_("prompt id"), max_length=200)
    prompt = models.TextField(_("prompt"), blank=True)
    left = models.TextField(_("left output"), help_text=_("text, or a data URI for an image"))
    right = models.TextField(_("right output"))
    vendor_side = models.CharField(_("vendor side"), max_length=8, choices=Side.choices)
    identical = models.BooleanField(_("byte-identical"), default=False, help_text=_("recorded as Same without a judge"))

    class Meta:
        ordering = ["evaluation_set", "position"]
        verbose_name = _("pair")
        verbose_name_plural = _("pairs")
        constraints = [models.UniqueConstraint(fields=["evaluation_set", "position"], name="pair_unique_position")]

    def __str__(self):
        return f"pair {self.position} of {self.evaluation_set}"

    def to_vendor_view(self, left_judgement: str) -> str:
        """Convert a judgement of the left output against the right one into the vendor's point of view.

        The conversion is its own inverse, so it also turns a vendor outcome back into the left view.
        """
        if left_judgement == Outcome.SAME or self.vendor_side == Side.LEFT:
            return left_judgement
        return Outcome.BAD if left_judgement == Outcome.GOOD else Outcome.GOOD


class Judgement(models.Model):
    """One reviewer's judgement of one pair; a reviewer may change it until the set is signed off."""

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="judgements")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(_("outcome for the vendor"), max_length=8, choices=Outcome.choices)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("judgement")
        verbose_name_plural = _("judgements")
        constraints = [models.UniqueConstraint(fields=["pair", "reviewer"], name="judgement_one_per_reviewer")]


class Adjudication(models.Model):
    """The final outcome of a pair that reviewers disagreed on, decided by staff."""

    pair = models.OneToOneField(Pair, on_delete=models.CASCADE, related_name="adjudication")
    outcome = models.CharField(_("outcome for the vendor"), max_length=8, choices=Outcome.choices)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(_("note"), blank=True)
    decided_at = models.DateTimeField(_("decided"), auto_now=True)

    class Meta:
        verbose_name = _("adjudication")
        verbose_name_plural = _("adjudications")


class SignOff(models.Model):
    """A named staff member's signed statement on a set's counts; never changed, only superseded by a newer one."""

    evaluation_set = models.ForeignKey(EvaluationSet, on_delete=models.PROTECT, related_name="sign_offs")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_name = models.CharField(_("signed by"), max_length=200)
    statement = models.TextField(_("statement"))
    good = models.PositiveIntegerField()
    same = models.PositiveIntegerField()
    bad = models.PositiveIntegerField()
    gsb = models.FloatField()
    p_value = models.FloatField()
    supersedes = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="superseded_by")
    created_at = models.DateTimeField(_("signed"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("sign-off")
        verbose_name_plural = _("sign-offs")

    def __str__(self):
        return f"sign-off of {self.evaluation_set} by {self.signer_name}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableError("a sign-off cannot be changed; sign off again to supersede it")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("a sign-off cannot be deleted; sign off again to supersede it")

    def as_human_result(self) -> dict:
        """Return the result in the form the verdict engine's human_gsb criterion reads."""
        return {"good": self.good, "same": self.same, "bad": self.bad, "signed_off_by": self.signer_name}


class HumanVerdict(models.Model):
    """The verdict of a submission judged again with the signed-off human results; the newest one counts."""

    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="human_verdicts")
    verdict = models.JSONField(_("verdict"))
    human = models.JSONField(_("human results"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("verdict with human evaluation")
        verbose_name_plural = _("verdicts with human evaluation")

    def track_level(self, track: str) -> int:
        return int(((self.verdict or {}).get("tracks", {}).get(track) or {}).get("level", 0))

    @property
    def criteria(self) -> list[dict]:
        return self.verdict.get("criteria", [])
