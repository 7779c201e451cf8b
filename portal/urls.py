from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from portal import views
from portal.api import api
from portal.health import healthz

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", healthz, name="healthz"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/export.csv", views.audit_export, name="audit-export"),
    path("access/", include("portal.access_urls")),
    path("reviews/", include("reviews.urls")),
    path("incidents/", include("reviews.incident_urls")),
    path("api/v1/", api.urls),
    path("metrics/alerts/", include("metrics.alert_urls")),
    path("metrics/imports/", include("metrics.import_urls")),
    path("metrics/", include("metrics.urls")),
    path("agents/", include("agents.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]

if settings.STEWARD_BENCH_ENDPOINTS:  # tests/perf/gate.py's baseline; never in production
    from portal import bench_views

    urlpatterns.append(path("api/bench/baseline", bench_views.baseline, name="bench-baseline"))
