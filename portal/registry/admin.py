from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from portal.registry.models import Card, Membership, SigningKey, Vendor


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Vendor)
class VendorAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_reference_lab", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Card)
class CardAdmin(admin.ModelAdmin):
    list_display = ["vendor", "model", "serial", "approved"]
    list_filter = ["approved", "vendor"]


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ["vendor", "key_id", "valid_from", "valid_until", "revoked_at"]
    list_filter = ["vendor"]
    actions = ["make_current", "revoke", "revoke_compromised"]

    @admin.action(description=_("Make the selected key its vendor's current key, ending the others' validity now"))
    def make_current(self, request, queryset):
        from portal.registry.keys import rotate_signing_key

        for key in queryset.filter(revoked_at__isnull=True):
            rotate_signing_key(key.vendor, key, actor=request.user)

    @admin.action(description=_("Revoke the selected keys from now"))
    def revoke(self, request, queryset):
        from portal.registry.keys import revoke_signing_key

        for key in queryset.filter(revoked_at__isnull=True):
            revoke_signing_key(key, actor=request.user)

    @admin.action(description=_("Revoke the selected keys after a compromise and flag their certificates for review"))
    def revoke_compromised(self, request, queryset):
        from portal.registry.keys import revoke_signing_key

        flagged = []
        for key in queryset.filter(revoked_at__isnull=True):
            flagged += revoke_signing_key(key, compromised=True, actor=request.user)
        self.message_user(request, _("%(count)d certificate(s) flagged for review.") % {"count": len(flagged)})
