"""Roles and access rules for pages, shared by the apps.

Two staff roles are Django groups that `portal.registry.roles` keeps in step
after every migration:

- certification staff (reviewers) see every submission, the queue and the
  audit log, and decide on certificates;
- staff administrators also approve cards and manage rule packs, reference
  bundles, vendors and other staff accounts.

Vendor members see their own vendor's records only; anonymous visitors see
the public pages.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

REVIEW = "submissions.review_submission"
ADMINISTER = "registry.administer_portal"
APPROVE_CARD = "registry.approve_card"


def has_role(user, permission: str) -> bool:
    """Staff accounts only: a permission granted to a non-staff account (by mistake) gives no staff page."""
    return user.is_authenticated and user.is_active and user.is_staff and user.has_perm(permission)


def is_reviewer(user) -> bool:
    return has_role(user, REVIEW)


def is_administrator(user) -> bool:
    return has_role(user, ADMINISTER)


def role_required(permission: str):
    """Send anonymous visitors to the login page and answer 403 to signed-in users without the role."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


reviewer_required = role_required(REVIEW)
administrator_required = role_required(ADMINISTER)


def staff_required(view):
    """Kept for the certificate pages: the certification staff role (reviewers and administrators)."""
    return reviewer_required(view)
