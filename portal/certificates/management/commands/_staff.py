"""The --staff-user lookup of the credential key commands. The leading underscore keeps Django from listing this module as a command."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def optional_staff_user(username: str):
    """Return the staff account named `username`, or None for an empty name, which the audit log records as the system."""
    if not username:
        return None
    actor = get_user_model().objects.filter(username=username, is_staff=True).first()
    if actor is None:
        raise CommandError(f"staff user {username!r} not found; pass the username of a staff account or leave --staff-user out")
    return actor
