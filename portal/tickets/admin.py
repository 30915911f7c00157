from django.contrib import admin

from portal.tickets.models import RunTicket


@admin.register(RunTicket)
class RunTicketAdmin(admin.ModelAdmin):
    list_display = ["ticket_id", "vendor", "card", "track", "level", "rule_pack", "issued_at", "expires_at", "used_by"]
    list_filter = ["vendor", "track"]
    readonly_fields = ["ticket_id", "nonce", "envelope", "issued_at", "expires_at", "used_by", "used_at"]
