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
