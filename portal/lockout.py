"""Login throttling with django-axes: the backend, the client address, the lockout page.

Settings (portal/settings.py, "Login throttling"): AXES_FAILURE_LIMIT failures for one
username from one address lock that pair out for AXES_COOLOFF_TIME. The lockout answers
429 with the login page and a message saying why and for how long.
"""

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render


class LockoutBackend(AxesStandaloneBackend):
    """Axes' check, for logins that come with a request (the login pages, the admin's).

    `authenticate()` without a request only happens in code the web cannot reach (the test
    client's `login()`, the shell); axes would refuse those outright, so they pass here and
    the next backend decides as usual.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str:
    """The address failures are counted for. Behind our TLS proxy (DJANGO_BEHIND_TLS_PROXY)
    the last X-Forwarded-For entry is the one the proxy saw; earlier entries are whatever the
    client claimed and cannot be trusted."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR", "")


def lockout_message() -> str:
    minutes = max(1, int(get_cool_off().total_seconds() // 60))
    return (f"Too many failed logins for this username from your address: logging in is "
            f"blocked for {minutes} minutes (each new try starts the wait again). Check the "
            "username and password, or ask an admin to reset your password.")


def lockout_response(request, original_response=None, credentials=None):
    """The login page again, with the lockout explained, answered 429 Too Many Requests."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    return render(request, "registration/login.html", {
        "form": form, "lockout": lockout_message(), "next": request.POST.get("next", ""),
    }, status=429)
