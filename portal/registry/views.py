"""Vendor pages for cards and signing keys, and the staff page that approves cards."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from portal.permissions import APPROVE_CARD, role_required
from portal.registry.errors import RegistryError
from portal.registry.forms import CardForm, KeyForm
from portal.registry.models import Card, SigningKey
from portal.registry.services import approve_card, register_card, register_signing_key, vendors_of

logger = logging.getLogger(__name__)


def client_address(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _chosen_vendor(form, vendors):
    return next(vendor for vendor in vendors if vendor.slug == form.cleaned_data["vendor"])


def _status(request, form) -> int:
    return 400 if request.method == "POST" and form.errors else 200


@login_required
@require_http_methods(["GET", "POST"])
def card_list(request):
    vendors = vendors_of(request.user)
    form = CardForm(request.POST or None, vendors=vendors)
    if request.method == "POST" and form.is_valid():
        try:
            card = register_card(_chosen_vendor(form, vendors), actor=request.user, remote_addr=client_address(request), **form.card_fields())
        except RegistryError as error:
            form.add_error(None, f"{error.detail} [{error.code}]")
        else:
            messages.success(request, _("Card %(model)s registered; staff will check its peaks.") % {"model": card.model})
            return redirect("card-list")
    cards = Card.objects.filter(vendor__in=vendors).select_related("vendor")
    return render(request, "registry/cards.html", {"cards": cards, "form": form, "vendors": vendors}, status=_status(request, form))


@sensitive_post_parameters("public_key_pem")
@login_required
@require_http_methods(["GET", "POST"])
def key_list(request):
    vendors = vendors_of(request.user)
    form = KeyForm(request.POST or None, vendors=vendors)
    if request.method == "POST" and form.is_valid():
        try:
            key = register_signing_key(
                _chosen_vendor(form, vendors), form.cleaned_data["public_key_pem"], actor=request.user, remote_addr=client_address(request)
            )
        except RegistryError as error:
            if error.code == "private_key_pasted":
                # Keep the secret out of the page that goes back to the browser.
                form.data = form.data.copy()
                form.data["public_key_pem"] = ""
            form.add_error(None, f"{error.detail} [{error.code}]")
        else:
            messages.success(request, _("Key %(key_id)s registered.") % {"key_id": key.key_id})
            return redirect("key-list")
    keys = SigningKey.objects.filter(vendor__in=vendors).select_related("vendor")
    return render(request, "registry/keys.html", {"keys": keys, "form": form, "vendors": vendors}, status=_status(request, form))


@role_required(APPROVE_CARD)
def staff_cards(request):
    pending = request.GET.get("show") != "all"
    cards = Card.objects.select_related("vendor", "approved_by")
    if pending:
        cards = cards.filter(approved=False)
    return render(request, "registry/staff_cards.html", {"cards": cards, "pending": pending})


@role_required(APPROVE_CARD)
@require_POST
def staff_card_approve(request, pk):
    card = get_object_or_404(Card, pk=pk)
    approve_card(card.pk, actor=request.user, remote_addr=client_address(request))
    messages.success(request, _("The peaks of %(card)s are approved.") % {"card": card})
    return redirect("staff-cards")
