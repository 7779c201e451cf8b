"""Django admin for the metric catalogue. Admins add metrics here; targets are normally set on
the agent's scorecard (audited), imports, rollups and reviews are records to look at."""

from django.contrib import admin

from metrics import services
from metrics.models import ImportBatch, Metric, Rollup, ScorecardReview, Target
from portal.admin import ReadOnlyAdmin


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    """Built-in metrics are what files, the API and the derived metrics refer to by key: they
    cannot be deleted and their key (and whether Steward derives them) cannot change."""

    list_display = ["name", "key", "layer", "unit", "higher_is_better", "aggregation",
                    "headline", "derived", "builtin"]
    list_filter = ["layer", "headline", "derived", "builtin"]
    search_fields = ["name", "key"]
    readonly_fields = ["builtin"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.builtin:
            return ["key", "derived", "builtin"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.builtin:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # the bulk delete action would bypass has_delete_permission(obj) for built-ins
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ["agent", "metric", "target", "human_baseline", "updated_by", "updated_at"]
    list_filter = ["metric__layer", "metric"]
    search_fields = ["agent__name", "agent__slug", "metric__key"]
    list_select_related = ["agent", "metric", "updated_by"]
    autocomplete_fields = ["metric"]
    readonly_fields = ["updated_by", "updated_at"]

    def save_model(self, request, obj, form, change):
        # through the service, so an admin's change is permission-checked and audited too
        saved = services.target_set(actor=request.user, agent=obj.agent, metric=obj.metric,
                                    target=obj.target, human_baseline=obj.human_baseline)
        if saved is not None:
            obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.target_set(actor=request.user, agent=obj.agent, metric=obj.metric,
                            target=None, human_baseline=None)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("agent", "metric"):
            self.delete_model(request, obj)


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "format", "origin", "status", "rows_total", "rows_imported",
                    "rows_updated", "rows_rejected", "created_by", "created_at"]
    list_filter = ["status", "format", "origin"]
    search_fields = ["original_name", "sha256"]
    list_select_related = ["created_by"]


@admin.register(Rollup)
class RollupAdmin(ReadOnlyAdmin):
    list_display = ["agent", "metric", "grain", "period_start", "value", "count", "updated_at"]
    list_filter = ["grain", "metric__layer", "metric"]
    search_fields = ["agent__slug", "metric__key"]
    list_select_related = ["agent", "metric"]
    date_hierarchy = "period_start"


@admin.register(ScorecardReview)
class ScorecardReviewAdmin(ReadOnlyAdmin):
    list_display = ["agent", "grain", "period_start", "decision", "reviewer", "created_at"]
    list_filter = ["decision", "grain"]
    search_fields = ["agent__name", "agent__slug", "notes"]
    list_select_related = ["agent", "reviewer"]
