from django.urls import path

from reviews import views

app_name = "reviews"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("<uuid:public_id>/", views.item, name="item"),
]
