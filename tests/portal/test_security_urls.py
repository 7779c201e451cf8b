"""SSRF: Steward calls only public https URLs in production, checked when saved and at send.

Receivers are real HTTP servers on 127.0.0.1; "private" here is exactly what must be refused.
"""

import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
from django.core.exceptions import ValidationError

from agents import services as agent_services
from agents.forms import AgentForm
from portal.url_safety import check_outgoing_url, is_public_address, safe_opener
from reviews import callbacks
from reviews import services as review_services
from reviews.models import ActionRequest
from tests.factories import UserFactory, make_agent


@pytest.fixture(autouse=True)
def production(settings):
    settings.DEBUG = False
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS = False


@pytest.fixture
def receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    server.url, server.received = f"http://127.0.0.1:{server.server_address[1]}/hook", received
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://10.0.0.5/hook", "https://192.168.1.20:8443/hook",
    "https://172.16.0.1/", "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/", "https://0.0.0.0/", "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook", "https://[fe80::1]/", "https://[fd00::1]/",
    # other spellings of 127.0.0.1 that the resolver understands
    "https://2130706433/hook", "https://127.1/hook", "https://0x7f.0.0.1/hook",
])
def test_private_loopback_link_local_and_metadata_addresses_are_refused(url):
    with pytest.raises(ValidationError, match="private, loopback or link-local"):
        check_outgoing_url(url)


@pytest.mark.parametrize("url", ["https://localhost/hook", "https://app.localhost/",
                                 "https://metadata.google.internal/computeMetadata/v1/",
                                 "https://printer.local/"])
def test_local_names_are_refused(url):
    with pytest.raises(ValidationError, match="is a local name"):
        check_outgoing_url(url)


@pytest.mark.parametrize("url", ["http://93.184.215.14/hook", "ftp://93.184.215.14/x",
                                 "file:///etc/passwd", "gopher://93.184.215.14/"])
def test_only_https_is_allowed_in_production(url):
    with pytest.raises(ValidationError, match="use an https:// URL"):
        check_outgoing_url(url)


def test_public_addresses_pass():
    check_outgoing_url("https://93.184.215.14/hook")
    check_outgoing_url("https://[2606:4700:4700::1111]:8443/hook")
    assert is_public_address("8.8.8.8") and not is_public_address("not an address")


def test_a_name_that_does_not_resolve_may_be_saved_but_not_sent():
    check_outgoing_url("https://agent.invalid/hook", require_resolution=False)
    with pytest.raises(ValidationError, match="does not resolve"):
        check_outgoing_url("https://agent.invalid/hook")


def test_a_malformed_url_says_so():
    with pytest.raises(ValidationError, match="not a valid URL"):
        check_outgoing_url("https://[::1/hook")
    with pytest.raises(ValidationError, match="no host name"):
        check_outgoing_url("https:///hook")


def test_debug_or_the_setting_allow_local_http_receivers(settings):
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS = True
    check_outgoing_url("http://127.0.0.1:8001/hook")
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS, settings.DEBUG = False, True
    check_outgoing_url("http://localhost:8001/hook")
    with pytest.raises(ValidationError, match="https"):
        check_outgoing_url("file:///etc/passwd")  # never another scheme


def test_the_opener_refuses_to_connect_to_a_private_address(receiver, settings):
    """The check at connect time catches a name that turned private after the URL check
    (DNS rebinding): the connection is closed before any byte of the request is sent."""
    with pytest.raises(urllib.error.URLError, match="private, loopback or link-local"):
        safe_opener().open(receiver.url, data=b"{}", timeout=5)
    with pytest.raises(urllib.error.URLError, match="private, loopback or link-local"):
        # https too, before the TLS handshake (the receiver speaks plain HTTP)
        safe_opener().open(receiver.url.replace("http:", "https:"), data=b"{}", timeout=5)
    assert receiver.received == []
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS = True
    with safe_opener().open(receiver.url, data=b"{}", timeout=5) as answer:
        assert answer.status == 200
    assert receiver.received == [b"{}"]


@pytest.mark.django_db
def test_a_callback_to_a_private_address_is_not_sent(receiver):
    agent = make_agent(slug="replies", ready=True)
    agent = agent_services.agent_move(actor=None, agent=agent, to_status="pilot")
    # Saved before the rule (or through the service, which trusts its caller).
    agent = agent_services.agent_update(actor=None, agent=agent, callback_url=receiver.url)
    token, _secret = agent_services.agent_token_create(actor=None, agent=agent, name="t")
    from reviews import gate

    action = gate.propose(token=token, proposal={
        "system": "helpdesk", "operation": "refund_reply", "kind": "draft",
        "summary": "Reply", "content": "Dear customer"}).action
    review_services.action_approve(actor=UserFactory(is_superuser=True), action=action)
    with pytest.raises(callbacks.CallbackNotDelivered, match="use an https:// URL"):
        callbacks.callback_deliver(action_id=action.pk)
    stored = ActionRequest.objects.get(pk=action.pk)
    assert stored.callback_attempts == 1 and "https" in stored.callback_error
    assert receiver.received == []


def _form_data(agent, **changes):
    form = AgentForm(instance=agent)
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        data[name] = [getattr(v, "pk", v) for v in value] if isinstance(value, list) else value
    return {**data, **changes}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["callback_url", "alert_webhook_url"])
def test_the_agent_form_refuses_an_internal_url_naming_the_field(field):
    agent = make_agent(slug="replies")
    form = AgentForm(instance=agent, data=_form_data(
        agent, callback_url="https://169.254.169.254/latest/meta-data/"))
    if field == "alert_webhook_url" and field not in form.fields:
        pytest.skip("the agent form has no alert webhook field (yet)")
    form = AgentForm(instance=agent, data=_form_data(
        agent, **{field: "https://169.254.169.254/latest/meta-data/"}))
    assert not form.is_valid()
    assert "169.254.169.254 points to 169.254.169.254" in form.errors[field][0]
    form = AgentForm(instance=agent, data=_form_data(agent, **{field: "https://93.184.215.14/h"}))
    assert form.is_valid(), form.errors
