from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class RegistryConfig(AppConfig):
    name = "portal.registry"
    verbose_name = _("Vendors and cards")

    def ready(self):
        from portal.registry.roles import ensure_role_groups

        # After the other apps' permissions exist; the receiver is idempotent.
        post_migrate.connect(ensure_role_groups, dispatch_uid="portal.registry.roles")
