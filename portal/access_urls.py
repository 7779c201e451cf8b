from django.urls import path

from portal import access_views as views

app_name = "access"

urlpatterns = [
    path("", views.index, name="index"),
    path("agent/<slug:slug>/", views.agent_access, name="agent"),
    path("agent/<slug:slug>/grant/", views.grant, name="grant"),
    path("agent/<slug:slug>/revoke/", views.revoke, name="revoke"),
    path("users/", views.users, name="users"),
    path("users/<str:username>/", views.user_access, name="user"),
    path("bulk/", views.bulk, name="bulk"),
]
