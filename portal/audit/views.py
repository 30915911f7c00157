"""The staff page of the audit log, searchable by action, actor, object and data."""

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render

from portal.audit.models import AuditEntry
from portal.permissions import reviewer_required

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
    query = request.GET.get("q", "").strip()
    action = request.GET.get("action", "").strip()
    entries = search(AuditEntry.objects.select_related("actor"), query)
    if action:
        entries = entries.filter(action=action)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    actions = AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct()
    context = {"page": page, "query": query, "action": action, "actions": actions}
    return render(request, "audit/log.html", context)
