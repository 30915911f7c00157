"""The staff roles as Django groups, created and kept in step after every migration."""

from __future__ import annotations

REVIEWERS = "certification staff"
ADMINISTRATORS = "staff administrators"

REVIEWER_PERMISSIONS = [
    "submissions.review_submission",
    "submissions.view_submission",
    "submissions.view_validationreport",
    "audit.view_auditentry",
    "registry.view_vendor",
    "registry.view_card",
    "registry.view_signingkey",
]
ADMINISTRATOR_PERMISSIONS = REVIEWER_PERMISSIONS + [
    "registry.administer_portal",
    "registry.approve_card",
    "registry.add_vendor", "registry.change_vendor",
    "registry.add_membership", "registry.change_membership", "registry.delete_membership", "registry.view_membership",
    "registry.add_card", "registry.change_card",
    "submissions.view_rulepack",
    "submissions.add_referencebundle", "submissions.view_referencebundle",
    "auth.add_user", "auth.change_user", "auth.view_user", "auth.view_group",
]
ROLES = {REVIEWERS: REVIEWER_PERMISSIONS, ADMINISTRATORS: ADMINISTRATOR_PERMISSIONS}


def ensure_role_groups(**kwargs) -> None:
    """Create both groups and set their permissions exactly; run as a post_migrate receiver."""
    from django.contrib.auth.models import Group, Permission

    for name, codes in ROLES.items():
        group, _created = Group.objects.get_or_create(name=name)
        wanted = [_permission(Permission, code) for code in codes]
        group.permissions.set([permission for permission in wanted if permission is not None])


def _permission(model, code: str):
    app_label, codename = code.split(".")
    return model.objects.filter(content_type__app_label=app_label, codename=codename).first()


def grant(user, role: str) -> None:
    """Make `user` a staff member with `role` (a group name above)."""
    from django.contrib.auth.models import Group

    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get(name=role))
