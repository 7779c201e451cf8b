"""Review pages. The inbox and the decisions arrive with the inbox issue; the item page
already shows what the gate decided, so the `review_url` the API returns leads somewhere."""

from django.shortcuts import render

from portal.views import placeholder
from reviews import selectors


def inbox(request):
    return placeholder(request, "reviews")


def item(request, public_id):
    action = selectors.action_for_user(user=request.user, public_id=public_id)
    return render(request, "reviews/item.html", {"action": action})
