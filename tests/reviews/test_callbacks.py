"""Decision callbacks: a signed POST to the agent's URL, retried with backoff, failures shown.

A real HTTP server on 127.0.0.1 (a free port, in a thread) plays the agent; the Celery task
runs eagerly with `.apply()`, its retries included (eager retries run at once)."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from agents import services as agent_services
from portal.models import AuditEvent
from reviews import callbacks, gate, tasks
from reviews import services as review_services
from reviews.models import ActionRequest
from tests.factories import UserFactory

PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute",
            "target": "deal 9", "summary": "Close deal 9", "changes": {"stage": "won"},
            "content": "Deal closed.", "confidence": 0.9}


class AgentServer:
    """Answers each POST with the next scripted status (the last one repeats); keeps them."""

    def __init__(self, statuses=(200,), delay: float = 0.0):
        self.statuses, self.delay, self.received, self.arrivals = list(statuses), delay, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.received.append((dict(self.headers), body))
                server.arrivals.append(time.monotonic())
                time.sleep(server.delay)
                status = (server.statuses.pop(0) if len(server.statuses) > 1
                          else server.statuses[0])
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                payload = b"ok" if status < 300 else b"boom"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/steward/decisions"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    """The receivers here listen on 127.0.0.1: opt in to private addresses (portal.url_safety)."""
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS = True


@pytest.fixture
def serve():
    servers = []

    def start(*statuses, delay=0.0):
        servers.append(AgentServer(statuses or (200,), delay))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def reviewer(db):
    return UserFactory(username="rita", first_name="Rita", last_name="Reviewer",
                       is_superuser=True)


@pytest.fixture
def token(live_agent):
    token, _secret = agent_services.agent_token_create(actor=None, agent=live_agent, name="t")
    return token


def _with_callback(agent, url: str):
    return agent_services.agent_update(actor=None, agent=agent, callback_url=url)


def _approved(token, reviewer, django_capture_on_commit_callbacks) -> ActionRequest:
    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        action = review_services.action_approve(actor=reviewer, action=action, note="Go")
    assert len(enqueued) == 1  # the callback task, sent once the decision commits
    assert action.callback_status == "pending"
    return action


def _send(action: ActionRequest) -> str:
    return tasks.callback_send.apply(args=[action.pk]).get()


# --- the request the agent receives ------------------------------------------------------------

@pytest.mark.django_db
def test_the_callback_is_signed_and_carries_the_decision(live_agent, token, reviewer, serve,
                                                         django_capture_on_commit_callbacks):
    server = serve(200)
    agent = _with_callback(live_agent, server.url)
    action = _approved(token, reviewer, django_capture_on_commit_callbacks)
    before = int(time.time())

    assert _send(action) == "delivered"

    [(headers, body)] = server.received
    timestamp = headers["X-Steward-Timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Steward-Signature"] == callbacks.sign(
        secret=agent.callback_secret, timestamp=timestamp, body=body)
    assert callbacks.verify_signature(secret=agent.callback_secret, timestamp=timestamp,
                                      body=body, signature=headers["X-Steward-Signature"])
    assert not callbacks.verify_signature(secret="not-the-secret", timestamp=timestamp,
                                          body=body, signature=headers["X-Steward-Signature"])
    payload = json.loads(body)
    assert payload == {
        "id": str(action.public_id), "status": "approved", "decision": "review",
        "review_note": "Go", "changes": {"stage": "won"}, "content": "Deal closed.",
        "edited": False, "decided_at": payload["decided_at"],
    }
    assert payload["decided_at"].startswith(action.reviewed_at.isoformat()[:19])
    stored = ActionRequest.objects.get(pk=action.pk)
    assert (stored.callback_status, stored.callback_attempts, stored.callback_error) == (
        "delivered", 1, "")
    assert AuditEvent.objects.filter(verb="action.callback_delivered",
                                     object_id=str(action.pk)).exists()


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"id":"x"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert callbacks.sign(secret="s3cret", timestamp="1700000000", body=body) == (
        f"sha256={expected}")
    signature = f"sha256={expected}"
    assert callbacks.verify_signature(secret="s3cret", timestamp="1700000000", body=body,
                                      signature=signature, now=1700000100)
    assert not callbacks.verify_signature(secret="s3cret", timestamp="1700000000", body=body,
                                          signature=signature, now=1700001000)  # too old
    assert not callbacks.verify_signature(secret="s3cret", timestamp="1700000000",
                                          body=body + b" ", signature=signature,
                                          now=1700000100)
    assert not callbacks.verify_signature(secret="s3cret", timestamp="soon", body=body,
                                          signature=signature)


@pytest.mark.django_db
def test_edits_rejections_and_expiry_are_sent_too(live_agent, token, reviewer, serve,
                                                  django_capture_on_commit_callbacks):
    server = serve(200)
    _with_callback(live_agent, server.url)
    edited, rejected, expired = (gate.propose(token=token, proposal=dict(PROPOSAL)).action
                                 for _ in range(3))
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        review_services.action_edit_approve(actor=reviewer, action=edited,
                                            content="Deal closed, thanks!")
        review_services.action_reject(actor=reviewer, action=rejected, note="Not yet")
        review_services.review_sla_enforce(now=timezone.now() + timedelta(hours=73))
    assert len(enqueued) == 3

    for action in (edited, rejected, expired):
        assert _send(action) == "delivered"
    payloads = {p["id"]: p for p in (json.loads(body) for _h, body in server.received)}
    assert payloads[str(edited.public_id)]["edited"] is True
    assert payloads[str(edited.public_id)]["content"] == "Deal closed, thanks!"
    assert payloads[str(rejected.public_id)]["status"] == "rejected"
    assert payloads[str(rejected.public_id)]["review_note"] == "Not yet"
    assert payloads[str(expired.public_id)]["status"] == "expired"
    assert payloads[str(expired.public_id)]["decided_at"]


@pytest.mark.django_db
def test_an_agent_without_a_callback_url_gets_no_callback(token, reviewer,
                                                          django_capture_on_commit_callbacks):
    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        action = review_services.action_approve(actor=reviewer, action=action)
    assert enqueued == [] and action.callback_status == ""
    assert _send(action) == ""  # a stray task does nothing


# --- retries and failures ----------------------------------------------------------------------

@pytest.mark.django_db
def test_a_failed_attempt_is_retried_until_it_is_delivered(live_agent, token, reviewer, serve,
                                                           django_capture_on_commit_callbacks):
    server = serve(500, 503, 200)
    _with_callback(live_agent, server.url)
    action = _approved(token, reviewer, django_capture_on_commit_callbacks)

    assert _send(action) == "delivered"

    assert len(server.received) == 3
    stamps = [headers["X-Steward-Signature"] for headers, _b in server.received]
    assert all(s.startswith("sha256=") for s in stamps)
    stored = ActionRequest.objects.get(pk=action.pk)
    assert (stored.callback_status, stored.callback_attempts, stored.callback_error) == (
        "delivered", 3, "")
    assert _send(action) == "delivered" and len(server.received) == 3  # done: sent once


@pytest.mark.django_db
def test_the_last_failure_is_recorded_and_shown_on_the_agents_page(
        live_agent, token, reviewer, serve, client, settings,
        django_capture_on_commit_callbacks):
    server = serve(500)
    _with_callback(live_agent, server.url)
    action = _approved(token, reviewer, django_capture_on_commit_callbacks)

    assert _send(action) == "failed"

    assert len(server.received) == settings.STEWARD_CALLBACK_MAX_ATTEMPTS == 6
    stored = ActionRequest.objects.get(pk=action.pk)
    assert (stored.callback_status, stored.callback_attempts) == ("failed", 6)
    assert stored.callback_error.startswith("HTTP 500")
    event = AuditEvent.objects.get(verb="action.callback_failed", object_id=str(action.pk))
    assert event.data["attempts"] == 6
    assert _send(action) == "failed" and len(server.received) == 6  # no seventh attempt

    client.force_login(live_agent.business_owner)
    page = client.get(live_agent.get_absolute_url()).content.decode()
    assert "Failed deliveries" in page
    assert "HTTP 500" in page and str(action.public_id) in page


@pytest.mark.django_db
def test_an_agent_that_does_not_answer_in_time_fails_the_attempt(
        live_agent, token, reviewer, serve, settings, django_capture_on_commit_callbacks):
    settings.STEWARD_CALLBACK_TIMEOUT_SECONDS = 0.2
    settings.STEWARD_CALLBACK_MAX_ATTEMPTS = 1
    server = serve(200, delay=1.0)
    _with_callback(live_agent, server.url)
    action = _approved(token, reviewer, django_capture_on_commit_callbacks)

    started = time.monotonic()
    assert _send(action) == "failed"
    assert time.monotonic() - started < 1.0
    assert "No answer within 0.2 s" in ActionRequest.objects.get(pk=action.pk).callback_error


@pytest.mark.django_db
def test_redirects_and_unreachable_urls_are_failures(live_agent, token, reviewer, serve,
                                                     settings,
                                                     django_capture_on_commit_callbacks):
    settings.STEWARD_CALLBACK_MAX_ATTEMPTS = 1
    server = serve(302)
    _with_callback(live_agent, server.url)
    moved = _approved(token, reviewer, django_capture_on_commit_callbacks)
    assert _send(moved) == "failed"
    assert ActionRequest.objects.get(pk=moved.pk).callback_error.startswith("HTTP 302")
    assert len(server.received) == 1

    server.close()
    gone = _approved(token, reviewer, django_capture_on_commit_callbacks)
    assert _send(gone) == "failed"
    assert "Could not reach" in ActionRequest.objects.get(pk=gone.pk).callback_error


def test_the_backoff_grows_exponentially_and_is_capped(settings):
    settings.STEWARD_CALLBACK_BACKOFF_SECONDS = 30
    for attempts, ceiling in ((1, 30), (2, 60), (3, 120), (5, 480), (20, 3600)):
        waits = [callbacks.backoff_seconds(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)


@pytest.mark.django_db
def test_each_retry_is_a_task_of_its_own(live_agent, token, reviewer, serve,
                                         django_capture_on_commit_callbacks):
    """portal.tasking counts deliveries per task id (a task that kills its worker is dropped
    after STEWARD_TASK_MAX_DELIVERIES): six attempts must not look like six deliveries."""
    from portal.models import TaskDelivery

    server = serve(500)
    _with_callback(live_agent, server.url)
    action = _approved(token, reviewer, django_capture_on_commit_callbacks)
    assert _send(action) == "failed"
    runs = TaskDelivery.objects.filter(task_name="reviews.tasks.callback_send")
    assert runs.count() == 6 and {run.deliveries for run in runs} == {1}


# --- the secret --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_first_callback_url_gets_a_secret_that_owners_can_read(live_agent, client, serve):
    assert live_agent.callback_secret == ""
    agent = _with_callback(live_agent, "https://agent.example.com/hook")
    secret = agent.callback_secret
    assert len(secret) == 64 and int(secret, 16) >= 0
    event = AuditEvent.objects.get(verb="agent.callback_secret_created")
    assert secret not in json.dumps(event.data) and event.data["hint"] == f"…{secret[-4:]}"
    agent = _with_callback(agent, "https://agent.example.com/other-hook")
    assert agent.callback_secret == secret  # a new URL keeps the secret

    client.force_login(live_agent.business_owner)
    assert secret in client.get(agent.get_absolute_url()).content.decode()
    viewer = UserFactory(username="vera")
    from guardian.shortcuts import assign_perm

    assign_perm("agents.view_agent", viewer, agent)
    client.force_login(viewer)
    page = client.get(agent.get_absolute_url()).content.decode()
    assert "https://agent.example.com/other-hook" in page
    assert secret not in page and f"…{secret[-4:]}" in page


# --- with a real worker ------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_after_a_backoff_and_delivers(
        live_agent, token, reviewer, serve, tmp_path, monkeypatch):
    from portal.models import TaskDelivery
    from tests.portal.test_celery import real_worker

    monkeypatch.setenv("STEWARD_CALLBACK_BACKOFF_SECONDS", "1")
    monkeypatch.setenv("STEWARD_ALLOW_PRIVATE_WEBHOOKS", "1")  # the worker calls 127.0.0.1
    server = serve(500, 200)
    _with_callback(live_agent, server.url)
    enqueued = []  # committed for real here: keep the message off the default queue
    monkeypatch.setattr(tasks.callback_send, "delay_on_commit", enqueued.append)
    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action
    review_services.action_approve(actor=reviewer, action=action)
    assert enqueued == [action.pk]

    with real_worker(tmp_path, queue="steward-test-callbacks") as log_path:
        tasks.callback_send.apply_async(args=[action.pk], queue="steward-test-callbacks")
        deadline = time.monotonic() + 60
        while ActionRequest.objects.get(pk=action.pk).callback_status != "delivered":
            if time.monotonic() > deadline:
                pytest.fail(f"not delivered; worker log:\n{log_path.read_text()}")
            time.sleep(0.2)

    stored = ActionRequest.objects.get(pk=action.pk)
    assert (stored.callback_attempts, len(server.received)) == (2, 2)
    first, second = server.arrivals
    assert second - first >= 0.5  # the retry waited its backoff: 0.5 to 1 s for attempt 1
    runs = TaskDelivery.objects.filter(task_name="reviews.tasks.callback_send")
    assert runs.count() == 2 and {run.deliveries for run in runs} == {1}
