from django.urls import path

from reviews import views

app_name = "reviews"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("<uuid:public_id>/", views.item, name="item"),
    path("<uuid:public_id>/approve/", views.approve, name="approve"),
    path("<uuid:public_id>/edit/", views.edit_approve, name="edit"),
    path("<uuid:public_id>/reject/", views.reject, name="reject"),
    path("<uuid:public_id>/claim/", views.claim, name="claim"),
    path("<uuid:public_id>/unclaim/", views.unclaim, name="unclaim"),
    path("<uuid:public_id>/looks-right/", views.looks_right, name="looks-right"),
    path("<uuid:public_id>/flag/", views.flag, name="flag"),
]
