"""Web hardening: login lockout, security headers and CSP, cookies, CSRF on every form,
passwords, and `check --deploy` in production settings."""

import re
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from tests.factories import PASSWORD, UserFactory
from tests.portal.test_settings import manage

LOGIN = "/accounts/login/"
TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _login(client, username, password, ip="10.1.1.1"):
    return client.post(LOGIN, {"username": username, "password": password},
                       REMOTE_ADDR=ip)


# --- lockout ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_five_failures_lock_the_username_at_that_address_with_a_clear_message(client):
    user = UserFactory(username="dana")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = _login(client, "dana", "wrong-password")
        assert answer.status_code == 200 and "Please enter a correct username" in \
            answer.content.decode()
    locked = _login(client, "dana", "wrong-password")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed logins for this username" in page
    assert "blocked for 15 minutes" in page
    assert 'name="csrfmiddlewaretoken"' in page and 'value="dana"' in page
    # Even the right password is refused now, and no session starts.
    again = _login(client, "dana", PASSWORD)
    assert again.status_code == 429
    assert "_auth_user_id" not in client.session
    assert user.pk is not None


@pytest.mark.django_db
def test_a_lockout_is_per_username_and_address(client, django_user_model):
    UserFactory(username="dana")
    UserFactory(username="erik")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "dana", "wrong-password")
    assert _login(client, "dana", PASSWORD).status_code == 429
    # Another user at the same address, and the same user elsewhere, still log in.
    assert _login(client, "erik", PASSWORD).status_code == 302
    client.logout()
    assert _login(client, "dana", PASSWORD, ip="10.2.2.2").status_code == 302


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(client):
    UserFactory(username="dana")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "dana", "wrong-password")
    assert _login(client, "dana", PASSWORD).status_code == 429
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    answer = _login(client, "dana", PASSWORD)
    assert answer.status_code == 302 and answer.url == reverse("dashboard")


@pytest.mark.django_db
def test_a_success_clears_the_failures(client):
    UserFactory(username="dana")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "dana", "wrong-password")
    assert _login(client, "dana", PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "dana", "wrong-password")
    assert _login(client, "dana", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(client):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "root", "password": "nope"},
                    REMOTE_ADDR="10.1.1.1")
    answer = client.post("/admin/login/", {"username": "root", "password": PASSWORD},
                         REMOTE_ADDR="10.1.1.1")
    assert answer.status_code == 429


@pytest.mark.django_db
def test_the_test_clients_logins_still_work(client):
    user = UserFactory(username="dana")
    assert client.login(username="dana", password=PASSWORD)
    assert client.get(reverse("dashboard")).status_code == 200
    client.logout()
    client.force_login(user)
    assert client.get(reverse("dashboard")).status_code == 200


# --- headers and cookies ----------------------------------------------------------------------

@pytest.mark.django_db
def test_every_page_sends_the_security_headers(client):
    client.force_login(UserFactory(is_superuser=True))
    for url in (LOGIN, reverse("dashboard"), reverse("reviews:inbox"), "/api/v1/agent"):
        answer = client.get(url, secure=True)
        policy = answer["Content-Security-Policy"]
        assert policy == settings.STEWARD_CSP, url
        assert answer["X-Frame-Options"] == "DENY"
        assert answer["Referrer-Policy"] == "same-origin"
        assert answer["X-Content-Type-Options"] == "nosniff"
        assert answer["Strict-Transport-Security"] == \
            "max-age=31536000; includeSubDomains; preload"


def test_the_policy_allows_no_inline_script_or_style_and_no_framing():
    directives = dict(d.strip().split(" ", 1) for d in settings.STEWARD_CSP.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in settings.STEWARD_CSP


@pytest.mark.django_db
def test_cookies_are_secure_httponly_and_same_site(client):
    UserFactory(username="dana")
    page = client.get(LOGIN, secure=True)
    csrf = page.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"
    answer = client.post(LOGIN, {"username": "dana", "password": PASSWORD}, secure=True)
    session = answer.cookies[settings.SESSION_COOKIE_NAME]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


def test_production_settings_redirect_to_https_and_keep_hsts():
    # portal.settings under DJANGO_DEBUG=0 (settings_test only turns the redirect off).
    assert settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE
    assert settings.SECURE_HSTS_SECONDS >= 31536000 and settings.SECURE_HSTS_INCLUDE_SUBDOMAINS


# --- templates: no inline script, CSRF on every POST form -----------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
HANDLER = re.compile(r"""\s(on[a-z]+|hx-on[:\-a-z]*)\s*=""", re.I)
JS_URL = re.compile(r"""(href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.I)
STYLE_ATTR = re.compile(r"""\sstyle\s*=""", re.I)
POST_FORM = re.compile(r"<form\b[^>]*method=[\"']?post[^>]*>(.*?)</form>", re.I | re.S)


def _templates():
    return sorted(TEMPLATES.rglob("*.html"))


def test_no_template_has_inline_script_handlers_or_style():
    problems = []
    for path in _templates():
        text = path.read_text()
        for pattern, what in ((INLINE_SCRIPT, "inline <script>"), (HANDLER, "event handler"),
                              (JS_URL, "javascript: URL"), (STYLE_ATTR, "style attribute")):
            problems += [f"{path.relative_to(TEMPLATES)}: {what}: {m.group(0).strip()}"
                         for m in pattern.finditer(text)]
    assert problems == []


def test_every_post_form_in_the_templates_has_a_csrf_token():
    missing = [f"{path.relative_to(TEMPLATES)}: {form[:60]!r}" for path in _templates()
               for form in POST_FORM.findall(path.read_text())
               if "{% csrf_token %}" not in form and 'name="csrfmiddlewaretoken"' not in form]
    assert missing == []


@pytest.mark.django_db
def test_htmx_requests_carry_the_csrf_token_and_htmx_runs_without_eval(client):
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(reverse("dashboard")).content.decode()
    token = re.search(r"""hx-headers='\{"X-CSRFToken": "([^"]+)"\}'""", page).group(1)
    assert len(token) >= 32
    config = re.search(r"""<meta name="htmx-config" content='([^']+)'>""", page).group(1)
    assert '"allowEval": false' in config and '"includeIndicatorStyles": false' in config


@pytest.mark.django_db
def test_an_htmx_post_without_the_token_is_refused(client):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory(is_superuser=True))
    answer = strict.post(reverse("logout"), headers={"HX-Request": "true"})
    assert answer.status_code == 403
    page = strict.get(reverse("dashboard")).content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    answer = strict.post(reverse("logout"), headers={"HX-Request": "true", "X-CSRFToken": token})
    assert answer.status_code == 302


# --- passwords and deploy checks --------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("password, why", [
    ("Xy7-short", "too short"), ("password1234", "too common"),
    ("739104856271", "entirely numeric"), ("dana.example.org", "too similar"),
])
def test_weak_passwords_are_refused(password, why):
    user = UserFactory.build(username="dana", email="dana@example.org")
    with pytest.raises(ValidationError) as refused:
        validate_password(password, user)
    assert why in " ".join(refused.value.messages)


@pytest.mark.django_db
def test_a_long_unusual_password_is_accepted():
    validate_password("correct horse battery staple", UserFactory.build(username="dana"))


def test_deploy_checks_are_clean_on_postgres_and_redis(tmp_path):
    """The production shape: PostgreSQL and Redis configured, nothing silenced."""
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path,
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="steward.example.com",
        DATABASE_URL="postgres://steward@127.0.0.1:5432/steward",
        REDIS_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
