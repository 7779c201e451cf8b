from django.urls import path

from metrics import import_views

app_name = "imports"

urlpatterns = [
    path("", import_views.import_list, name="list"),
    path("<uuid:public_id>/", import_views.import_detail, name="detail"),
    path("<uuid:public_id>/errors.csv", import_views.import_errors_csv, name="errors"),
]
