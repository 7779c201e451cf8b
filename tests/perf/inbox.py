"""The review inbox under load: `.venv/bin/python -m tests.perf.inbox` (part of `make bench`).

What it does, start to end (about a minute and a half on 2 cores):

1. drops and recreates a dedicated PostgreSQL database (`steward_bench_inbox` on 127.0.0.1,
   or `STEWARD_BENCH_INBOX_DATABASE_URL`; its name must contain "bench"), migrates it and
   loads the gate benchmark's policy (tests/perf/gate.py: a live L2 agent, Managers…);
2. seeds 100,000 pending action requests with COPY (realistic proposals, 10% routed to
   Managers, due times spread over a week, some overdue) plus 32 reviewers, each with their
   own session (every 4th is a manager);
3. in process: prepares the first page's 50 rows (escaping and composing their parts) and
   renders the `reviews/inbox.html#list` partial with them (the template alone, the rows
   already loaded), 300 times; and EXPLAIN ANALYZEs the row query on the first page and
   half-way through the 100,000 (the keyset seeks the partial index: no OFFSET);
4. serves the app with gunicorn (DJANGO_DEBUG=0, no Redis) and drives `GET /reviews/` with wrk
   at 32 clients (the reviewers' sessions in turn) for STEWARD_BENCH_SECONDS after a warm-up;
5. prints requests/s, p50/p95/p99, non-2xx answers, the render time, and which of the issue's
   targets are met. It never fails on a missed target.

The load generator, server start and database helpers are tests/perf/gate.py's (its wrk
runner takes our GET script; its JSON summary is the same). Knobs: STEWARD_BENCH_SECONDS,
STEWARD_BENCH_WARMUP_SECONDS, STEWARD_BENCH_CLIENTS (as for the gate);
STEWARD_BENCH_INBOX_ROWS (100000), STEWARD_BENCH_INBOX_WORKERS (3) and
STEWARD_BENCH_INBOX_THREADS (1: sync workers; a page is CPU-bound Python, unlike the gate's
API calls, which wait on PostgreSQL more).
"""

import os
import random
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

from tests.perf import gate

DATABASE_URL = os.environ.get("STEWARD_BENCH_INBOX_DATABASE_URL",
                              "postgres://postgres@127.0.0.1:5432/steward_bench_inbox")
ROWS = int(os.environ.get("STEWARD_BENCH_INBOX_ROWS", "100000"))
# A page is CPU-bound Python: sync workers, not the gate's threads. Threads in one process
# take turns on the GIL, and keep-alive connections stick to a worker, so some requests
# queue behind a busy one; on 2 cores that doubled the p99 at the same throughput.
WORKERS = int(os.environ.get("STEWARD_BENCH_INBOX_WORKERS", "3"))
THREADS = int(os.environ.get("STEWARD_BENCH_INBOX_THREADS", "1"))
REVIEWERS = 32
RENDERS = 300
INBOX_PATH = "/reviews/"

# The targets (issue 4, point 1).
MIN_RPS = 190
MAX_P99_MS = 225
MAX_RENDER_MS = 3.0


def seed(rows: int) -> list[str]:
    """100,000 pending requests of the gate benchmark's agent, and the reviewers' cookies."""
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.utils import timezone
    from guardian.shortcuts import assign_perm

    from agents.models import Agent, System
    from portal.models import User
    from reviews.gate import proposal_digest
    from reviews.models import ActionRequest

    agent = Agent.objects.get(slug="bench-agent")
    systems = dict(System.objects.values_list("slug", "id"))
    managers = Group.objects.get(name="Managers")
    proposals = [p for p in gate.realistic_proposals(512) if p["system"] in systems]
    rng = random.Random(4)
    now = timezone.now()
    reasons = [[{"code": "guardrail", "message": "Stage changes need approval"}],
               [{"code": "guardrail", "message": "Refunds over 500 need a manager"}],
               [{"code": "confidence_review", "message": "Confidence 0.62 is under 0.7"}],
               [{"code": "source_stale", "message": "Source 'CRM accounts' is stale"},
                {"code": "guardrail", "message": "Key accounts"}],
               [{"code": "blast_radius", "message": "Over 200 writes in the last hour"}]]
    fields = [f for f in ActionRequest._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    started = time.monotonic()
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {ActionRequest._meta.db_table} ({columns}) FROM STDIN") as copy:
        for n in range(rows):
            proposal = proposals[n % len(proposals)]
            created = now - timedelta(seconds=rng.uniform(60, 7 * 86400))
            action = ActionRequest(
                public_id=uuid.uuid4(), agent=agent, created_at=created,
                system_id=systems[proposal["system"]], operation=proposal["operation"],
                kind=proposal["kind"], target=proposal.get("target", ""),
                summary=proposal.get("summary", ""), changes=proposal.get("changes") or {},
                content=proposal.get("content", ""), amount=proposal.get("amount"),
                currency=proposal.get("currency", ""), confidence=proposal.get("confidence"),
                sources=proposal.get("sources") or [], prompt=proposal.get("prompt", ""),
                cost_usd=proposal.get("cost_usd"), tokens=proposal.get("tokens"),
                decision="review", reasons=reasons[n % len(reasons)], status="pending",
                route_to_group=managers if n % 10 == 0 else None,
                policy_version=agent.policy_version, fired_guardrail_ids=[],
                proposal_sha256=proposal_digest(proposal),
                due_at=created + timedelta(hours=agent.review_sla_hours))
            copy.write_row([f.get_db_prep_save(f.pre_save(action, True), connection)
                            for f in fields])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ActionRequest._meta.db_table}")
    print(f"  {rows:,} pending requests stored in {time.monotonic() - started:.1f} s",
          flush=True)

    cookies = []
    for n in range(REVIEWERS):
        user = User.objects.create_user(username=f"bench-reviewer-{n:02d}",
                                        first_name="Reviewer", last_name=f"{n:02d}")
        assign_perm("agents.view_agent", user, agent)
        assign_perm("agents.review_agent", user, agent)
        if n % 4 == 0:
            user.groups.add(managers)
        client = Client()
        client.force_login(user)
        name = settings.SESSION_COOKIE_NAME
        cookies.append(f"{name}={client.cookies[name].value}")
    return cookies


def measure_render() -> tuple[list[float], list[float], int, dict]:
    """Milliseconds to prepare the 50 rows (escape and compose their parts) and to render the
    list (the `reviews/inbox.html#list` partial, template alone), and the row query's plan."""
    from django.db import connection
    from django.template.loader import get_template
    from django.test import RequestFactory
    from django.utils import timezone

    from portal.models import User
    from reviews import selectors

    user = User.objects.get(username="bench-reviewer-01")
    filters = selectors.InboxFilters()
    page = selectors.inbox_page(user=user, filters=filters)
    request = RequestFactory().get(INBOX_PATH)
    request.user = user
    context = {"page": page, "filters": filters, "query": "", "tab_query": "",
               "page_size": selectors.PAGE_SIZE,
               "since": selectors.format_stamp(timezone.now()), "scope_empty": False,
               "csrf_token": "x" * 64, "user": user, "request": request}
    template = get_template("reviews/inbox.html#list")
    clock = time.perf_counter
    prepare, render = [], []
    for n in range(RENDERS + 20):  # the first 20 warm up
        start = clock()
        page.rows = selectors.inbox_rows(page.records, user=user, tab=filters.tab,
                                         extra={"csrf": "x" * 64})
        middle = clock()
        html = template.render(context)
        if n >= 20:
            prepare.append((middle - start) * 1e3)
            render.append((clock() - middle) * 1e3)

    # The page's row query on the first page and half-way through (keyset, not OFFSET).
    plans = {}
    scope = selectors.review_scope(user)
    middle_row = selectors._records_sql(scope=scope, filters=filters, cursor=None,
                                        limit=ROWS // 2, now=timezone.now())[-1]
    for label, cursor in (("first page", None),
                          ("half-way", (middle_row.due_at, middle_row.id))):
        captured = []

        def explain(execute, sql, params, many, context, captured=captured):
            if sql.lstrip().startswith("SELECT a.id"):
                execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params, many, context)
                captured.append(context["cursor"].fetchone()[0][0])
                return execute("SELECT 1 WHERE FALSE", (), many, context)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(explain):
            selectors._records_sql(scope=scope, filters=filters, cursor=cursor,
                                   limit=selectors.PAGE_SIZE + 1, now=timezone.now())
        plan = captured[0]
        plans[label] = (plan["Execution Time"], _index_names(plan["Plan"]))
    return prepare, render, html.count("data-item"), plans


def _index_names(node: dict) -> list[str]:
    names = [node["Index Name"]] if "Index Name" in node else []
    for child in node.get("Plans", []):
        names += _index_names(child)
    return names


def check_page(url: str, cookie: str) -> int:
    request = urllib.request.Request(url + INBOX_PATH, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read().decode()
        if reply.status != 200 or "login" in reply.url:
            sys.exit(f"{INBOX_PATH} answered {reply.status} at {reply.url}, not the inbox.")
    return body.count("data-item")


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install -y wrk` (make bench does it).",
              file=sys.stderr)
        return 2
    # The gate's helpers, on the inbox's own database and server settings.
    gate.DATABASE_URL, gate.WORKERS, gate.THREADS = DATABASE_URL, WORKERS, THREADS
    var_dir = tempfile.mkdtemp(prefix="steward-bench-inbox-")
    env = gate.bench_environment(var_dir)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    print(f"Recreating {DATABASE_URL.rsplit('/', 1)[-1]} and loading the policy…", flush=True)
    gate.recreate_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("collectstatic", interactive=False, verbosity=0)  # pages need the manifest
    gate.load_policy()
    print(f"Seeding {ROWS:,} pending items and {REVIEWERS} reviewers…", flush=True)
    cookies = seed(ROWS)
    print(f"Rendering the 50-row list in process ({RENDERS} times)…", flush=True)
    prepare, renders, rows_rendered, plans = measure_render()
    connections.close_all()
    cookie_file = Path(var_dir) / "cookies.txt"
    cookie_file.write_text("".join(f"{INBOX_PATH}\t{cookie}\n" for cookie in cookies))
    script = Path(var_dir) / "inbox.lua"
    script.write_text(gate.GET_PAGES_SCRIPT)

    port = gate.free_port()
    url = f"http://127.0.0.1:{port}"
    server = gate.start_gunicorn(env, port)
    try:
        rows_served = check_page(url, cookies[1])
        print(f"Warming up ({gate.WARMUP_SECONDS} s)…", flush=True)
        gate.wrk(url, INBOX_PATH, "", cookie_file, script, clients=gate.CLIENTS,
                 seconds=gate.WARMUP_SECONDS)
        print(f"Driving GET {INBOX_PATH} with {gate.CLIENTS} clients for {gate.SECONDS} s…",
              flush=True)
        load = gate.wrk(url, INBOX_PATH, "", cookie_file, script, clients=gate.CLIENTS,
                        seconds=gate.SECONDS)
    finally:
        server.terminate()
        server.wait(timeout=30)
    shutil.rmtree(var_dir, ignore_errors=True)
    report(load, prepare, renders, rows_rendered, rows_served, plans)
    return 0


def report(load: "gate.Load", prepare: list[float], renders: list[float], rows_rendered: int,
           rows_served: int, plans: dict) -> None:
    worker_class = "gthread" if gate.THREADS > 1 else "sync"
    both = [p + r for p, r in zip(prepare, renders, strict=True)]
    render_median = statistics.median(both)
    render_p95 = sorted(both)[int(len(both) * 0.95) - 1]
    print()
    print(textwrap.dedent(f"""\
        Steward inbox benchmark: {ROWS:,} pending items, GET {INBOX_PATH} as {REVIEWERS}
        reviewers (own sessions, every 4th a manager); gunicorn {gate.WORKERS} workers ×
        {gate.THREADS} threads ({worker_class}), PostgreSQL {DATABASE_URL.rsplit('/', 1)[-1]},
        DJANGO_DEBUG=0, wrk on loopback, {gate.SECONDS} s at {gate.CLIENTS} clients after a
        {gate.WARMUP_SECONDS} s warm-up; {os.cpu_count()} CPUs shared by wrk, gunicorn and
        PostgreSQL (load average {os.getloadavg()[0]:.2f} at the end: anything else running
        on the machine takes its share). Each page served {rows_served} rows.
        """))
    header = (f"{'clients':>7}  {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'non-2xx':>8} {'requests':>9}")
    print(header)
    print("-" * len(header))
    print(f"{gate.CLIENTS:>7}  {load.rps:>8.1f} {load.p50_ms:>8.2f} {load.p95_ms:>8.2f} "
          f"{load.p99_ms:>8.2f} {load.failures:>8} {load.requests:>9}")
    print()
    for label, (ms, indexes) in plans.items():
        print(f"Row query, {label}: {ms:.2f} ms in PostgreSQL, index "
              f"{', '.join(indexes) or 'none (sequential scan)'}")
    print(f"{rows_rendered} rows rendered in process: median {render_median:.2f} ms, p95 "
          f"{render_p95:.2f} ms over {len(both)} renders (preparing the rows "
          f"{statistics.median(prepare):.2f} ms + the template "
          f"{statistics.median(renders):.2f} ms)")
    print()
    print("Targets (issue 4, point 1):")
    print(f"  requests/s at {gate.CLIENTS} clients       {load.rps:8.1f}    "
          f"target ≥ {MIN_RPS}        {gate.mark(load.rps >= MIN_RPS)}")
    print(f"  p99 at {gate.CLIENTS} clients              {load.p99_ms:8.1f} ms "
          f"target < {MAX_P99_MS} ms    {gate.mark(load.p99_ms < MAX_P99_MS)}")
    print(f"  50 rows rendered (median)      {render_median:8.2f} ms "
          f"target < {MAX_RENDER_MS} ms      {gate.mark(render_median < MAX_RENDER_MS)}")
    print(f"  non-2xx or failed requests     {load.failures:8d}    "
          f"target 0          {gate.mark(load.failures == 0)}")


if __name__ == "__main__":
    sys.exit(main())
