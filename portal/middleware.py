import time

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.http import JsonResponse

API_PREFIX = "/api/"


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Every page needs a login, except the agent API, which authenticates by bearer token."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(API_PREFIX):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ApiBodyLimitMiddleware:
    """Refuse oversized API bodies with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIX):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.STEWARD_API_MAX_BODY_BYTES
            if length > limit:
                return JsonResponse(
                    {"detail": f"The request body is {length} bytes; the limit is {limit} "
                               f"bytes ({limit // 1024} KiB). Send a shorter prompt or content."},
                    status=413)
        return self.get_response(request)


class SessionActivityMiddleware:
    """Expire sessions after inactivity without writing the session on every request.

    SESSION_COOKIE_AGE counts from the last save; touching the session at most once a minute
    keeps a working user logged in (expiry is exact to the minute) while most page views
    write nothing.
    """

    REFRESH_SECONDS = 60

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is not None and session.accessed and not session.is_empty():
            now = int(time.time())
            if now - session.get("_active_at", 0) >= self.REFRESH_SECONDS:
                session["_active_at"] = now  # marks it modified: SessionMiddleware saves it
        return response


class ContentSecurityPolicyMiddleware:
    """Send settings.STEWARD_CSP on every response that has none yet.

    A fixed header instead of django-csp: every script and style is a file under static/
    (no inline code, so no nonces to mint per response) and one policy fits every page.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.STEWARD_CSP
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
