"""Writing audit entries inside the transaction of the change they record."""

from __future__ import annotations

from django.db import models, transaction

from portal.audit.models import AuditEntry

SYSTEM_ACTOR = "system"


def record(action: str, obj: models.Model, *, actor=None, data: dict | None = None, remote_addr: str | None = None) -> AuditEntry:
    """Append one audit entry; the caller must hold the transaction of the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"audit entry {action!r} written outside a transaction; wrap the change in transaction.atomic()")
    authenticated = actor is not None and actor.is_authenticated
    return AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_label=actor.get_username() if authenticated else SYSTEM_ACTOR,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        data=data or {},
        remote_addr=remote_addr or None,
    )
