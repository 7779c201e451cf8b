"""The gate under load: `make bench`, or `.venv/bin/python -m tests.perf.gate`.

What it does, start to end (about two minutes on 2 cores):

1. drops and recreates a dedicated PostgreSQL database (`steward_bench` on 127.0.0.1, or
   `STEWARD_BENCH_DATABASE_URL`; its name must contain "bench"), migrates it, and loads a
   realistic policy through the registry-as-code path: a live L2 agent with 10 guardrails,
   3 declared sources, access to 4 systems, a write limit and a budget;
2. in process, runs gate calls through Django's test client to measure the share of the
   gate's CPU spent in `agents.policy.decide` (rule evaluation), and counts the Celery tasks
   the calls publish (`before_task_publish`);
3. serves the app with gunicorn (DJANGO_DEBUG=0, no Redis) and drives it with wrk on
   loopback: `POST /api/v1/actions` with 256 varied proposals, and the baseline
   `POST /api/bench/baseline` (portal/bench_views.py: one indexed SELECT, one INSERT) with
   the same bodies; 32 clients for STEWARD_BENCH_SECONDS (20) after a warm-up, then one
   client for half as long;
4. prints requests/s, p50/p95/p99 latency and non-2xx answers of both, the ratios, and
   which of the issue's targets are met. It never fails on a missed target: timing targets
   belong in a benchmark, not in the test suite.

Why wrk: it is C and event-driven, so on these 2 cores it takes the least CPU away from the
server, and it takes the same share in both scenarios; a Python client would need several
processes and most of a core to keep 32 connections busy, and would skew the ratio. Its Lua
script (written next to the bodies in a temporary folder) cycles through the proposals,
counts every non-2xx answer, and prints p50/p95/p99 as JSON.

Tuning knobs (environment): STEWARD_BENCH_SECONDS, STEWARD_BENCH_WARMUP_SECONDS,
STEWARD_BENCH_WORKERS (default 3), STEWARD_BENCH_THREADS (default 4: gthread workers;
3 × 4 gave the gate its best throughput of 2 × 4, 3 × 4, 3 × 8 and 4 sync workers),
STEWARD_BENCH_CLIENTS (default 32), STEWARD_BENCH_INPROCESS_CALLS (default 600),
STEWARD_BENCH_ROUNDS (default 2). Each scenario's time is split into rounds that alternate
baseline and gate (A B, B A, ...), so a neighbour's burst of work on the same machine falls on
both; throughput is over all rounds, latency percentiles are averaged over the rounds,
weighted by their requests.
"""

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("STEWARD_BENCH_DATABASE_URL",
                              "postgres://postgres@127.0.0.1:5432/steward_bench")
SECONDS = int(os.environ.get("STEWARD_BENCH_SECONDS", "20"))
WARMUP_SECONDS = int(os.environ.get("STEWARD_BENCH_WARMUP_SECONDS", "5"))
WORKERS = int(os.environ.get("STEWARD_BENCH_WORKERS", "3"))
THREADS = int(os.environ.get("STEWARD_BENCH_THREADS", "4"))
CLIENTS = int(os.environ.get("STEWARD_BENCH_CLIENTS", "32"))
INPROCESS_CALLS = int(os.environ.get("STEWARD_BENCH_INPROCESS_CALLS", "600"))
ROUNDS = int(os.environ.get("STEWARD_BENCH_ROUNDS", "2"))
ROUND_SECONDS = {CLIENTS: max(1, SECONDS // ROUNDS), 1: max(1, max(5, SECONDS // 2) // ROUNDS)}
PROPOSALS = 256
GATE_PATH = "/api/v1/actions"
BASELINE_PATH = "/api/bench/baseline"

# The targets (docs: issue 3, point 8).
MIN_THROUGHPUT_RATIO = 0.7
MAX_P99_RATIO = 1.3
MAX_UNLOADED_P50_RATIO = 1.5
MAX_RULE_SHARE = 0.05

REGISTRY = """
systems:
  - {slug: crm, name: CRM}
  - {slug: helpdesk, name: Helpdesk}
  - {slug: billing, name: Billing}
  - {slug: knowledge-base, name: Knowledge base}
  - {slug: marketing-automation, name: Marketing automation}
  - {slug: bench-baseline, name: Benchmark baseline}
data_sources:
  - {slug: crm-accounts, name: CRM accounts, approved: true, max_age: 1d,
     refreshed_at: "%(now)s"}
  - {slug: ticket-history, name: Ticket history, approved: true}
  - {slug: refund-policy, name: Refund policy, approved: true, max_age: 365d,
     refreshed_at: "%(now)s"}
groups:
  - {name: Managers, members: [bench-manager]}
agents:
  - slug: bench-agent
    name: Benchmark agent
    business_outcome: Keep the CRM tidy and answer refund tickets within the hour.
    definition_of_done: Deals are current and every refund ticket has a draft reply.
    autonomy_level: 2
    status: live
    owners: {business: bench-owner, process: bench-owner, technical: bench-owner}
    pausers: [bench-manager]
    review_groups: [Managers]
    review_sample_rate: 0.1
    confidence: {review_below: 0.7, block_below: 0.3}
    max_writes_per_hour: 200
    monthly_cost_budget: 5000
    access: {crm: execute, helpdesk: draft, billing: recommend, knowledge-base: read}
    sources: [crm-accounts, ticket-history, refund-policy]
    guardrails:
      - {name: Stage changes need approval, system: crm, field: changes.stage,
         operator: changed}
      - {name: Owner changes need approval, system: crm, field: changes.owner,
         operator: changed}
      - {name: Bulk updates, field: changes.records_affected, operator: gt, value: 50}
      - {name: Deep discounts, field: changes.discount_pct, operator: gte, value: 30}
      - {name: Refunds over 500 need a manager, system: helpdesk, operation: refund_reply,
         field: amount, operator: gt, value: 500, route_to_group: Managers}
      - {name: Refunds over 5000 are never automated, field: amount, operator: gt,
         value: 5000, effect: block}
      - {name: Negative amounts, field: amount, operator: lt, value: 0, effect: block}
      - {name: Legal tickets go to a manager, field: changes.ticket_tag, operator: in,
         value: [legal, chargeback], route_to_group: Managers}
      - {name: No deletions, field: operation, operator: eq, value: delete_contact,
         effect: block}
      - {name: Key accounts, field: target, operator: contains, value: key account}
    rollback:
      - {title: Revert the change, instructions: Restore the field from the CRM history.}
  - slug: bench-baseline
    name: Benchmark baseline
    business_outcome: Give the benchmark a token for its baseline endpoint.
    definition_of_done: The baseline endpoint answers.
    owners: {business: bench-owner, process: bench-owner, technical: bench-owner}
    access: {bench-baseline: read}
"""


def bench_environment(var_dir: str) -> dict[str, str]:
    """Production settings, loopback only: no debug, no Redis, no HTTPS redirect."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": DATABASE_URL,
        "STEWARD_BENCH_ENDPOINTS": "1",
        "STEWARD_VAR_DIR": var_dir,
        "STEWARD_LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def recreate_database() -> None:
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(DATABASE_URL)
    name = config["NAME"]
    if "bench" not in name:
        sys.exit(f"Refusing to drop database {name!r}: the benchmark's database name must "
                 "contain 'bench' (set STEWARD_BENCH_DATABASE_URL).")
    with psycopg.connect(host=config["HOST"] or "127.0.0.1", port=config["PORT"] or 5432,
                         user=config["USER"] or "postgres", password=config["PASSWORD"] or None,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def load_policy() -> tuple[str, str]:
    """The registry above, applied as `apply_agents` would; a token for each agent."""
    from django.core.management import call_command
    from django.utils import timezone

    from agents import registry_yaml, rollout_demo, services
    from agents.models import Agent
    from metrics import selectors as metric_selectors
    from metrics import services as metric_services
    from metrics.models import Metric
    from portal.models import User

    call_command("migrate", interactive=False, verbosity=0)
    for username in ("bench-owner", "bench-manager"):
        User.objects.create_user(username=username)
    now = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    registry = registry_yaml.parse(REGISTRY % {"now": now})
    # Going live takes a complete rollout plan: held in pilot first, as the demo does, with
    # the targets, human baselines and first review the plan asks for.
    registry_yaml.apply(rollout_demo.staged(registry))
    agent = Agent.objects.get(slug="bench-agent")
    for key in ("accuracy", "completeness", "policy_compliance"):
        metric_services.target_set(actor=None, agent=agent, metric=Metric.objects.get(key=key),
                                   target=95, human_baseline=90)
    metric_services.scorecard_review_record(
        actor=None, agent=agent, grain="week", decision="expand",
        period_start=metric_selectors.reporting_periods("week", timezone.localdate())[0])
    rollout_demo.seed_plans(registry)
    registry_yaml.apply(registry)
    secrets_by_slug = {}
    for slug in ("bench-agent", "bench-baseline"):
        _token, secret = services.agent_token_create(
            actor=None, agent=Agent.objects.get(slug=slug), name="bench")
        secrets_by_slug[slug] = secret
    return secrets_by_slug["bench-agent"], secrets_by_slug["bench-baseline"]


def realistic_proposals(count: int, seed: int = 20261124) -> list[dict]:
    """What a CRM-and-support agent sends: mostly routine, some that a guardrail catches."""
    rng = random.Random(seed)
    words = ["customer", "renewal", "invoice", "discount", "onboarding", "contract", "pipeline",
             "quarter", "churn", "refund", "shipping", "delay", "apology", "policy", "account",
             "escalation", "manager", "forecast", "meeting", "follow-up", "pricing", "tier",
             "seats", "usage", "support", "ticket"]

    def text(n_words: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n_words)).capitalize() + "."

    def common() -> dict:
        return {"confidence": round(min(0.99, rng.gauss(0.86, 0.09)), 2),  # ~4% under 0.7
                "prompt": text(rng.randint(150, 600)),
                "cost_usd": round(rng.uniform(0.001, 0.05), 4),
                "tokens": rng.randint(400, 4000)}

    proposals = []
    for _ in range(count):
        roll = rng.random()
        deal = rng.randint(1000, 9999)
        if roll < 0.40:  # tidy a deal: mostly allowed, a stage or owner change is reviewed
            changes = {"close_date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                       "next_step": text(8)}
            if rng.random() < 0.15:
                changes["stage"] = rng.choice(["negotiation", "won", "lost"])
            if rng.random() < 0.05:
                changes["owner"] = rng.choice(["bob", "paula"])
            if rng.random() < 0.05:
                changes["discount_pct"] = rng.choice([10, 20, 35])
            proposal = {"system": "crm", "operation": "update_deal", "kind": "execute",
                        "target": f"deal {deal}" + (" (key account)" if rng.random() < 0.05
                                                    else ""),
                        "summary": f"Update deal {deal}: {text(6)}", "changes": changes,
                        "sources": ["crm-accounts"]}
        elif roll < 0.70:  # a refund reply: over 500 goes to the Managers
            amount = round(rng.choice([rng.uniform(10, 480), rng.uniform(10, 480),
                                       rng.uniform(500, 900)]), 2)
            proposal = {"system": "helpdesk", "operation": "refund_reply", "kind": "draft",
                        "target": f"ticket {deal}", "summary": f"Refund {amount} EUR",
                        "amount": amount, "currency": "EUR", "content": text(120),
                        "changes": {"ticket_tag": rng.choice(
                            ["billing", "billing", "shipping", "legal"])},
                        "sources": ["ticket-history", "refund-policy"]}
        elif roll < 0.85:  # a follow-up recommendation in billing
            proposal = {"system": "billing", "operation": "recommend_plan", "kind": "recommend",
                        "target": f"account {deal}", "summary": text(10),
                        "changes": {"plan": rng.choice(["team", "business"]),
                                    "records_affected": rng.choice([1, 3, 12, 80])},
                        "sources": ["crm-accounts"]}
        elif roll < 0.97:  # look something up
            proposal = {"system": "knowledge-base", "operation": "search", "kind": "read",
                        "summary": text(6), "sources": ["ticket-history"]}
        else:  # beyond its access: blocked
            proposal = {"system": "marketing-automation", "operation": "send_campaign",
                        "kind": "execute", "target": "segment trial-users",
                        "summary": text(8), "sources": []}
        proposals.append({**proposal, **common()})
    return proposals


@dataclass
class InProcess:
    calls: int
    request_cpu_s: float
    propose_cpu_s: float
    decide_cpu_s: float
    celery_published: int
    statuses: dict[int, int]


def measure_in_process(secret: str, proposals: list[dict]) -> InProcess:
    """Rule evaluation's share of the gate's CPU, and Celery publishes on the request path."""
    from celery.signals import before_task_publish
    from django.test import Client

    from reviews import gate

    published = []

    def on_publish(sender=None, **kwargs):
        published.append(sender)

    clock = time.thread_time_ns
    spent = {"decide": 0, "propose": 0}
    real_decide, real_propose = gate.decide, gate.propose

    def timed_decide(*args, **kwargs):
        start = clock()
        try:
            return real_decide(*args, **kwargs)
        finally:
            spent["decide"] += clock() - start

    def timed_propose(*args, **kwargs):
        start = clock()
        try:
            return real_propose(*args, **kwargs)
        finally:
            spent["propose"] += clock() - start

    client = Client(headers={"Authorization": f"Bearer {secret}"})
    bodies = [json.dumps(p) for p in proposals]
    for body in bodies[:50]:  # warm-up: snapshot cache, connections, imports
        client.post(GATE_PATH, body, content_type="application/json")
    gate.decide, gate.propose = timed_decide, timed_propose
    before_task_publish.connect(on_publish, weak=False)
    statuses: dict[int, int] = {}
    request_ns = 0
    try:
        for i in range(INPROCESS_CALLS):
            start = clock()
            response = client.post(GATE_PATH, bodies[i % len(bodies)],
                                   content_type="application/json")
            request_ns += clock() - start
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    finally:
        gate.decide, gate.propose = real_decide, real_propose
        before_task_publish.disconnect(on_publish)
    return InProcess(INPROCESS_CALLS, request_ns / 1e9, spent["propose"] / 1e9,
                     spent["decide"] / 1e9, len(published), statuses)


WRK_SCRIPT = r"""
-- Cycles through the bodies (one JSON per line), counts non-2xx, prints JSON at the end.
local threads = {}
local requests, n, i = {}, 0, 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

function init(args)
  local path, token, file = args[1], args[2], args[3]
  for line in io.lines(file) do
    n = n + 1
    requests[n] = wrk.format("POST", path, {["Content-Type"] = "application/json",
                             ["Authorization"] = "Bearer " .. token}, line)
  end
  i = ((index or 1) * 97) % n
  non2xx = 0
end

function request()
  i = i % n + 1
  return requests[i]
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""

# Pages as a logged-in person: GET each line's path with its session cookie, in turn (a file of
# "<path>\t<cookie>" lines, wrk's third argument); the rest is the gate's script above.
GET_PAGES_SCRIPT = r"""
-- GET "<path>\t<cookie>" lines in turn; counts non-2xx, prints JSON at the end.
local threads = {}
local requests, n, i = {}, 0, 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

function init(args)
  for line in io.lines(args[3]) do
    local path, cookie = line:match("^([^\t]*)\t(.*)$")
    n = n + 1
    requests[n] = wrk.format("GET", path, {["Cookie"] = cookie})
  end
  i = ((index or 1) * 7) % n
  non2xx = 0
end

function request()
  i = i % n + 1
  return requests[i]
end

""" + WRK_SCRIPT[WRK_SCRIPT.index("function response"):]


@dataclass
class Load:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def failures(self) -> int:
        return self.non2xx + self.socket_errors


def merged(rounds: list[Load]) -> Load:
    total = sum(load.requests for load in rounds)

    def weighted(name: str) -> float:
        return sum(getattr(load, name) * load.requests for load in rounds) / total

    return Load(requests=total, seconds=sum(load.seconds for load in rounds),
                non2xx=sum(load.non2xx for load in rounds),
                socket_errors=sum(load.socket_errors for load in rounds),
                p50_ms=weighted("p50_ms"), p95_ms=weighted("p95_ms"), p99_ms=weighted("p99_ms"))


def wrk(url: str, path: str, token: str, bodies: Path, script: Path, *, clients: int,
        seconds: int) -> Load:
    threads = min(2, clients)
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds}s", "--timeout", "10s",
         "-s", str(script), url + path, "--", path, token, str(bodies)],
        capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith('{"requests"'))
    data = json.loads(line)
    return Load(requests=data["requests"], seconds=data["duration_us"] / 1e6,
                non2xx=data["non2xx"], socket_errors=data["socket_errors"] + data["timeouts"],
                p50_ms=data["p50_us"] / 1e3, p95_ms=data["p95_us"] / 1e3,
                p99_ms=data["p99_us"] / 1e3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    worker_class = "gthread" if THREADS > 1 else "sync"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(WORKERS), "--threads", str(THREADS), "--worker-class", worker_class,
         "--keep-alive", "30", "--backlog", "2048", "--log-level", "warning"],
        cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:  # refused, reset or timed out while it starts
            time.sleep(0.3)
    server.kill()
    sys.exit("gunicorn did not answer /healthz within 30 s.")


def check_answers(url: str, path: str, token: str, body: str) -> None:
    request = urllib.request.Request(url + path, data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        sys.exit(f"{path} answered {exc.code}: {exc.read()[:500]!r}")
    if status != 201:
        sys.exit(f"{path} answered {status}, not 201.")


def decisions_stored() -> dict[str, int]:
    from django.db.models import Count

    from reviews.models import ActionRequest

    rows = (ActionRequest.objects.filter(agent__slug="bench-agent").values("decision")
            .annotate(n=Count("id")))
    return {row["decision"]: row["n"] for row in rows}


def mark(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install -y wrk` (make bench does it).",
              file=sys.stderr)
        return 2
    var_dir = tempfile.mkdtemp(prefix="steward-bench-")
    (Path(var_dir) / "staticfiles").mkdir()  # WhiteNoise warns without it; the API needs none
    env = bench_environment(var_dir)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    recreate_database()

    import django

    django.setup()
    from django.db import connections

    gate_secret, baseline_secret = load_policy()
    proposals = realistic_proposals(PROPOSALS)
    bodies = Path(var_dir) / "bodies.jsonl"
    bodies.write_text("".join(json.dumps(p) + "\n" for p in proposals))
    script = Path(var_dir) / "bench.lua"
    script.write_text(WRK_SCRIPT)

    print(f"Measuring rule evaluation in process ({INPROCESS_CALLS} gate calls)…", flush=True)
    inproc = measure_in_process(gate_secret, proposals)
    connections.close_all()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_gunicorn(env, port)
    results: dict[tuple[str, int], Load] = {}
    try:
        check_answers(url, GATE_PATH, gate_secret, bodies.read_text().splitlines()[0])
        check_answers(url, BASELINE_PATH, baseline_secret, bodies.read_text().splitlines()[0])
        scenarios = (("baseline", BASELINE_PATH, baseline_secret),
                     ("gate", GATE_PATH, gate_secret))
        for name, path, secret in scenarios:
            print(f"Warming up {name} ({WARMUP_SECONDS} s)…", flush=True)
            wrk(url, path, secret, bodies, script, clients=CLIENTS, seconds=WARMUP_SECONDS)
        for clients, per_round in ROUND_SECONDS.items():
            print(f"Driving both with {clients} client{'s' if clients > 1 else ''}: "
                  f"{ROUNDS} rounds of {per_round} s each…", flush=True)
            runs: dict[str, list[Load]] = {"baseline": [], "gate": []}
            for round_number in range(ROUNDS):
                order = scenarios if round_number % 2 == 0 else scenarios[::-1]
                for name, path, secret in order:
                    runs[name].append(wrk(url, path, secret, bodies, script, clients=clients,
                                          seconds=per_round))
            for name, loads in runs.items():
                results[name, clients] = merged(loads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    queued = sum(1 for _ in (Path(var_dir) / "broker" / "queue").glob("*"))
    decided = decisions_stored()
    connections.close_all()
    shutil.rmtree(var_dir, ignore_errors=True)

    report(results, inproc, queued, decided)
    return 0


def report(results: dict, inproc: InProcess, queued: int, decided: dict[str, int]) -> None:
    worker_class = "gthread" if THREADS > 1 else "sync"
    loaded, unloaded = ROUND_SECONDS[CLIENTS] * ROUNDS, ROUND_SECONDS[1] * ROUNDS
    print()
    print(textwrap.dedent(f"""\
        Steward gate benchmark: gunicorn {WORKERS} workers × {THREADS} threads ({worker_class}),
        PostgreSQL {DATABASE_URL.rsplit('/', 1)[-1]}, DJANGO_DEBUG=0, wrk on loopback,
        {loaded} s at {CLIENTS} clients and {unloaded} s at 1 client per scenario
        in {ROUNDS} alternating rounds, after a {WARMUP_SECONDS} s warm-up; {os.cpu_count()} CPUs
        shared by wrk, gunicorn, PostgreSQL and whatever else runs on the machine.
        """))
    header = (f"{'clients':>7}  {'endpoint':<9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'p99 ms':>8} {'non-2xx':>8} {'requests':>9}")
    print(header)
    print("-" * len(header))
    for clients in (CLIENTS, 1):
        for name in ("baseline", "gate"):
            load = results[name, clients]
            print(f"{clients:>7}  {name:<9} {load.rps:>8.1f} {load.p50_ms:>8.2f} "
                  f"{load.p95_ms:>8.2f} {load.p99_ms:>8.2f} {load.failures:>8} "
                  f"{load.requests:>9}")
    gate, base = results["gate", CLIENTS], results["baseline", CLIENTS]
    gate1, base1 = results["gate", 1], results["baseline", 1]
    throughput = gate.rps / base.rps
    p99 = gate.p99_ms / base.p99_ms
    p50_unloaded = gate1.p50_ms / base1.p50_ms
    failures = gate.failures + gate1.failures + base.failures + base1.failures
    rule_share = inproc.decide_cpu_s / inproc.request_cpu_s
    total = sum(decided.values()) or 1
    print()
    print("Targets (issue 3, point 8):")
    print(f"  throughput gate/baseline at {CLIENTS} clients  {throughput:6.2f}×   "
          f"target ≥ {MIN_THROUGHPUT_RATIO}× (stretch 1.0×)   {mark(throughput >= 0.7)}")
    print(f"  p99 gate/baseline at {CLIENTS} clients         {p99:6.2f}×   "
          f"target ≤ {MAX_P99_RATIO}×                 {mark(p99 <= MAX_P99_RATIO)}")
    print(f"  p50 gate/baseline at 1 client          {p50_unloaded:6.2f}×   "
          f"target ≤ {MAX_UNLOADED_P50_RATIO}×                 "
          f"{mark(p50_unloaded <= MAX_UNLOADED_P50_RATIO)}")
    print(f"  non-2xx or failed requests             {failures:6d}    target 0"
          f"                     {mark(failures == 0)}")
    print(f"  rule evaluation share of gate CPU      {rule_share:6.1%}    "
          f"target < {MAX_RULE_SHARE:.0%}                  {mark(rule_share < MAX_RULE_SHARE)}")
    per_call = 1e3 / inproc.calls  # ms per call
    print(f"      ({inproc.calls} in-process gate requests: "
          f"{inproc.request_cpu_s * per_call:.2f} ms CPU each, of which propose() "
          f"{inproc.propose_cpu_s * per_call:.2f} ms and decide() "
          f"{inproc.decide_cpu_s * per_call * 1e3:.0f} µs, "
          f"{inproc.decide_cpu_s / inproc.propose_cpu_s:.1%} of propose())")
    print(f"  Celery tasks published by gate calls   {inproc.celery_published:6d}    "
          f"target 0                     {mark(inproc.celery_published == 0 and queued == 0)}")
    print(f"      (before_task_publish over {inproc.calls} in-process calls; "
          f"{queued} messages in the broker after the load runs)")
    print()
    print("Decisions stored for the gate's agent: " + ", ".join(
        f"{name} {decided.get(name, 0) / total:.0%}" for name in ("allow", "review", "block"))
          + f" of {sum(decided.values())}; in-process answers: {inproc.statuses}")


if __name__ == "__main__":
    sys.exit(main())
