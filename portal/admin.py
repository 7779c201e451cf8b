from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from portal.models import AuditEvent, TaskDelivery, User

admin.site.site_header = "Steward administration"
admin.site.site_title = "Steward"
admin.site.index_title = "Users, groups and catalogue"

admin.site.register(User, UserAdmin)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records that change only through services (or never): look, don't touch."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only."""

    list_display = ["id", "seq", "created_at", "actor_label", "verb", "object_repr"]
    list_filter = ["verb", "actor_type"]
    search_fields = ["actor_label", "object_repr", "verb"]


@admin.register(TaskDelivery)
class TaskDeliveryAdmin(admin.ModelAdmin):
    list_display = ["task_name", "task_id", "deliveries", "last_started_at", "finished_at",
                    "gave_up"]
    list_filter = ["gave_up", "task_name"]
