"""Django admin for the registry catalogue. Agents themselves are changed on the portal's own
pages (through the services, so every change is audited); here they are read-only."""

from django.contrib import admin
from guardian.admin import GuardedModelAdminMixin

from agents.models import Agent, AgentToken, DataSource, System
from portal.admin import ReadOnlyAdmin


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]


@admin.register(DataSource)
class DataSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "approved", "maintainer", "refreshed_at", "max_age"]
    list_filter = ["approved"]
    search_fields = ["name", "slug"]


@admin.register(Agent)
class AgentAdmin(GuardedModelAdminMixin, ReadOnlyAdmin):
    list_display = ["name", "slug", "status", "autonomy_level", "business_owner"]
    list_filter = ["status", "autonomy_level"]
    search_fields = ["name", "slug"]


@admin.register(AgentToken)
class AgentTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "name", "agent", "created_at", "last_used_at", "revoked_at"]
    exclude = ["secret_hash"]
