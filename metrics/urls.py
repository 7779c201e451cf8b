from django.urls import path

from metrics import views

app_name = "metrics"

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("export.csv", views.fleet_export, name="export"),
    path("<slug:slug>/", views.agent_scorecard, name="agent"),
    path("<slug:slug>/targets/", views.target_save, name="target-save"),
    path("<slug:slug>/reviews/", views.review_record, name="review"),
]
