from django.contrib import admin

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
