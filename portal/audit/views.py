"""The staff page of the audit log, searchable by action, actor, object and data."""

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render

from portal.audit.models import AuditEntry
from portal.permissions import reviewer_required
from portal.query_params import read_paginated_page, read_search, response_status

PAGE_SIZE = 100


def search(entries, query: str):
    """Keep entries whose action, actor, object, address or data contain every word of `query`."""
    for word in query.split():
        entries = entries.filter(
            Q(action__icontains=word) | Q(actor_label__icontains=word) | Q(object_type__icontains=word)
            | Q(object_id=word) | Q(remote_addr__startswith=word) | Q(data__icontains=word)
        )
    return entries


@reviewer_required
def audit_log(request):
    """Render the audit log in pages of PAGE_SIZE, newest first.

    An invalid page is named above the rows, with status 400, or 404 past the last page.
    """
    errors = []
    query = read_search(request.GET, "q", errors)
    action = read_search(request.GET, "action", errors)
    entries = search(AuditEntry.objects.select_related("actor"), query)
    if action:
        entries = entries.filter(action=action)
    page = read_paginated_page(Paginator(entries, PAGE_SIZE), request.GET, errors)
    actions = AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct()
    context = {"page": page, "query": query, "action": action, "actions": actions, "errors": errors}
    return render(request, "audit/log.html", context, status=response_status(errors))
