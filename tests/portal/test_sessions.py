"""Sessions expire after inactivity, yet a page view does not write the session every time."""

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _expiry(client):
    return Session.objects.get(session_key=client.session.session_key).expire_date


def test_activity_extends_the_session_at_most_once_a_minute(client):
    client.force_login(UserFactory())
    client.get(reverse("dashboard"))
    first = _expiry(client)
    client.get(reverse("agents:list"))
    assert _expiry(client) == first  # within the minute: nothing written

    session = client.session
    session["_active_at"] -= 120  # the last refresh was two minutes ago
    session.save()
    saved = _expiry(client)
    client.get(reverse("agents:list"))
    assert _expiry(client) > saved


def test_an_expired_session_is_logged_out(client, settings):
    client.force_login(UserFactory())
    Session.objects.update(expire_date="2000-01-01T00:00:00Z")
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
