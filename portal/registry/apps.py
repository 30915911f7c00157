from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RegistryConfig(AppConfig):
    name = "portal.registry"
    verbose_name = _("Vendors and cards")
