"""Errors of requesting run tickets, one code per case."""

from django.utils.translation import gettext_lazy as _

from portal.errors import ErrorSpec, PortalError

TICKET_REQUEST_ERRORS = {
    "ticket_card_unknown": ErrorSpec(
        400, _("The card %(card)s is not a registered card of %(vendor)s. Choose one of your vendor's cards."),
    ),
    "ticket_card_not_approved": ErrorSpec(
        400, _("The card %(model)s (serial %(serial)s) is not approved yet, so no ticket can be issued for it. Ask the staff to approve it."),
    ),
    "ticket_scope_unknown": ErrorSpec(
        400, _("The rule pack %(name)s has no level %(level)s in the track %(track)s. Choose a track and level that the rule pack defines."),
    ),
    "ticket_not_found": ErrorSpec(404, _("No run ticket %(ticket_id)s of your vendors exists. Check the address.")),
}


class TicketRequestError(PortalError):
    table = TICKET_REQUEST_ERRORS
