from django.urls import path

from metrics import alert_views as views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list, name="list"),
    path("<int:pk>/", views.alert_detail, name="detail"),
    path("<int:pk>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("<int:pk>/resolve/", views.alert_resolve, name="resolve"),
    path("<int:pk>/lower-autonomy/", views.alert_lower_autonomy, name="lower-autonomy"),
    path("<int:pk>/maintainer/", views.alert_assign_maintainer, name="maintainer"),
]
