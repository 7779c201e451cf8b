"""Django admin for the registry catalogue. Agents themselves are changed on the portal's own
pages (through the services, so every change is audited); here they are read-only."""

from django.contrib import admin
from guardian.admin import GuardedModelAdminMixin

from agents.models import Agent, AgentToken, DataSource, System


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]


@admin.register(DataSource)
class DataSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "approved", "maintainer", "refreshed_at", "max_age"]
    list_filter = ["approved"]
    search_fields = ["name", "slug"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Agent)
class AgentAdmin(GuardedModelAdminMixin, ReadOnlyAdmin):
    list_display = ["name", "slug", "status", "autonomy_level", "business_owner"]
    list_filter = ["status", "autonomy_level"]
    search_fields = ["name", "slug"]


@admin.register(AgentToken)
class AgentTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "name", "agent", "created_at", "last_used_at", "revoked_at"]
    exclude = ["secret_hash"]
