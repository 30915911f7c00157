from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CertificatesConfig(AppConfig):
    name = "portal.certificates"
    verbose_name = _("Certificates")

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from portal.certificates.listing_cache import bump_listing_version
        from portal.certificates.models import Certificate
        from portal.registry.models import Card, Vendor
        from portal.submissions.models import RulePack

        # The listing shows fields of these models; any change must reach the cached pages.
        for model in (Certificate, Card, Vendor, RulePack):
            post_save.connect(bump_listing_version, sender=model, dispatch_uid=f"listing-version-{model._meta.label_lower}-save")
            post_delete.connect(bump_listing_version, sender=model, dispatch_uid=f"listing-version-{model._meta.label_lower}-delete")
