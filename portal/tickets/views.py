"""Vendor pages for run tickets: request one, list them, download one as a file for an offline lab."""

import logging

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from portal.certificates.models import Track
from portal.registry.models import Card
from portal.registry.services import vendors_of
from portal.submissions.models import RulePack
from portal.submissions.templatetags.portal_tags import level_numeral, track_label
from portal.tickets.errors import TicketRequestError
from portal.tickets.models import RunTicket
from portal.tickets.services import issue_ticket, ticket_file, ticket_scopes

logger = logging.getLogger(__name__)


class TicketForm(forms.Form):
    card = forms.ModelChoiceField(label=_("Card"), queryset=Card.objects.none())
    rule_pack = forms.ModelChoiceField(label=_("Rule pack"), queryset=RulePack.objects.all())
    scope = forms.ChoiceField(label=_("Track and level"))

    def __init__(self, *args, vendors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["card"].queryset = Card.objects.filter(vendor__in=vendors, approved=True).select_related("vendor")
        scopes = {(track, level) for pack in RulePack.objects.all() for track, level in ticket_scopes(pack)}
        self.fields["scope"].choices = [(f"{track}:{level}", scope_label(track, level)) for track, level in sorted(scopes, key=_scope_order)]


def scope_label(track: str, level: int) -> str:
    """Return a track and level as pages name them, such as "Fine-tuning I" or "调优 I", in the active language."""
    return f"{capfirst(track_label(track))} {level_numeral(level)}"


def _scope_order(scope: tuple[str, int]) -> tuple[int, str, int]:
    track, level = scope
    known = Track.values
    return (known.index(track) if track in known else len(known), track, level)


@login_required
@require_http_methods(["GET", "POST"])
def ticket_list(request):
    vendors = vendors_of(request.user)
    form = TicketForm(request.POST or None, vendors=vendors)
    if request.method == "POST" and form.is_valid():
        track, _sep, level = form.cleaned_data["scope"].partition(":")
        card = form.cleaned_data["card"]
        try:
            issue_ticket(vendor=card.vendor, card=card, track=track, level=int(level),
                         rule_pack=form.cleaned_data["rule_pack"], actor=request.user)
        except TicketRequestError as error:
            logger.info("run ticket request by %s refused: %s", request.user.get_username(), error.code)
            form.add_error(None, f"{error.detail} [{error.code}]")
        else:
            return redirect("ticket-list")
    tickets = RunTicket.objects.filter(vendor__in=vendors).select_related("card", "rule_pack", "used_by")
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "tickets/list.html", {"form": form, "tickets": tickets, "vendors": vendors}, status=status)


@login_required
def ticket_download(request, ticket_id):
    ticket = get_object_or_404(RunTicket.objects.select_related("vendor"), ticket_id=ticket_id)
    if not ticket.vendor.has_member(request.user):
        raise Http404
    response = HttpResponse(ticket_file(ticket), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="run-ticket-{ticket.ticket_id}.json"'
    return response
