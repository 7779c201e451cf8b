"""Scorecards over 5,000,000 observations: `.venv/bin/python -m tests.perf.scorecards`.

What it does, start to end (about five minutes on 2 cores):

1. drops and recreates a dedicated PostgreSQL database (`steward_bench_scorecards` on
   127.0.0.1, or `STEWARD_BENCH_SCORECARDS_DATABASE_URL`; its name must contain "bench") and
   migrates it;
2. registers 40 agents (pilot and live, owners, a target and a human baseline for each
   headline metric, a past scorecard review) and loads 40 agents × 15 metrics × 8,334
   points over the last two years (5,000,400 observations) with COPY: the observation
   table's secondary indexes and foreign keys are dropped for the load and recreated after,
   as a bulk load into an empty table should be; then VACUUM ANALYZE;
3. times `metrics.rollups.rebuild()` (every rollup from scratch), a `refresh()` of one week
   bucket (one agent, all its metrics: what an import of that week costs on top of the
   upsert), and a refresh of that week for every agent and metric, and prints
   `EXPLAIN (ANALYZE, BUFFERS)` of the week statement for one agent and week;
4. in process, counts the SQL queries of each page and checks none reads
   `metrics_observation` (scorecards are served from rollups);
5. serves the app with gunicorn (DJANGO_DEBUG=0, no Redis) logged in as a RevOps user and
   drives, one after the other, `GET /metrics/`, `/metrics/?grain=month`,
   `/metrics/<slug>/` and `/metrics/<slug>/?grain=month` (the 40 agents in turn) with wrk,
   STEWARD_BENCH_SECONDS each at one client (a page's own latency) and at
   STEWARD_BENCH_SCORECARDS_CLIENTS (latency with queueing), after a warm-up;
6. prints requests/s and p50/p95/p99 of each page against the issue's targets (p95 under
   150 ms; a one-week refresh under 0.2 s). It never fails on a missed target.

The server, wrk runner and database helpers are tests/perf/gate.py's. Knobs:
STEWARD_BENCH_SECONDS (10 here), STEWARD_BENCH_WARMUP_SECONDS (3 here),
STEWARD_BENCH_SCORECARDS_CLIENTS (4: a few RevOps leaders on a Monday morning, not a
stampede), STEWARD_BENCH_SCORECARDS_WORKERS (3 sync workers: a page is CPU-bound Python),
STEWARD_BENCH_SCORECARDS_POINTS (8334 points per agent and metric),
STEWARD_BENCH_SCORECARDS_REUSE=1 (keep the previous run's database and data: measure again
without the two-minute load).
"""

import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.perf import gate

DATABASE_URL = os.environ.get("STEWARD_BENCH_SCORECARDS_DATABASE_URL",
                              "postgres://postgres@127.0.0.1:5432/steward_bench_scorecards")
SECONDS = int(os.environ.get("STEWARD_BENCH_SECONDS", "10"))
WARMUP_SECONDS = int(os.environ.get("STEWARD_BENCH_WARMUP_SECONDS", "3"))
CLIENTS = int(os.environ.get("STEWARD_BENCH_SCORECARDS_CLIENTS", "4"))
WORKERS = int(os.environ.get("STEWARD_BENCH_SCORECARDS_WORKERS", "3"))
POINTS = int(os.environ.get("STEWARD_BENCH_SCORECARDS_POINTS", "8334"))
REUSE = os.environ.get("STEWARD_BENCH_SCORECARDS_REUSE", "") == "1"
AGENTS = 40
SPAN = timedelta(days=730)
REFRESH_REPEATS = 20
PROFILE_RENDERS = 10

# 15 of the catalogue's metrics, the four headlines among them: (key, typical value, spread)
METRICS = [("cycle_time", 20, 6), ("conversion_rate", 30, 8), ("resolution_rate", 70, 10),
           ("actions_proposed", 120, 40), ("accuracy", 92, 4), ("completeness", 88, 6),
           ("policy_compliance", 97, 2), ("incidents_per_100", 1.5, 1), ("adoption", 60, 15),
           ("acceptance_rate", 80, 8), ("override_rate", 20, 8), ("user_feedback", 4, 0.5),
           ("cost_usd", 40, 15), ("cost_per_action", 0.3, 0.1), ("model_calls", 900, 300)]
PERCENT = {"conversion_rate", "resolution_rate", "accuracy", "completeness",
           "policy_compliance", "adoption", "acceptance_rate", "override_rate"}

# The targets (issue 5, point 9).
MAX_PAGE_P95_MS = 150
MAX_WEEK_REFRESH_S = 0.2


# --- the data ----------------------------------------------------------------------------------

def register_agents() -> tuple[list, str]:
    """40 agents with owners, targets and a past review; a RevOps user's session cookie."""
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.test import Client

    from agents import services
    from agents.models import Agent
    from metrics.models import Metric, ScorecardReview, Target
    from portal.models import User
    from portal.roles import REVOPS  # the role groups exist after migrate

    owner = User.objects.create_user(username="bench-owner", first_name="Olga",
                                     last_name="Owner")
    agents = []
    for n in range(AGENTS):
        agent = services.agent_create(
            actor=None, slug=f"bench-agent-{n:02d}", name=f"Benchmark agent {n:02d}",
            business_owner=owner, process_owner=owner, technical_owner=owner,
            business_outcome="Answer refund tickets within the hour.",
            definition_of_done="Every refund ticket has a draft reply.")
        agents.append(agent)
    # half in pilot (weekly reviews), half live (monthly): both cadences on the fleet page
    Agent.objects.filter(pk__in=[a.pk for a in agents[::2]]).update(status="pilot")
    Agent.objects.filter(pk__in=[a.pk for a in agents[1::2]]).update(
        status="live", review_cadence="monthly")
    headlines = list(Metric.objects.filter(headline=True))
    Target.objects.bulk_create([Target(agent=a, metric=m, target=100, human_baseline=80)
                                for a in agents for m in headlines])
    ScorecardReview.objects.bulk_create([
        ScorecardReview(agent=a, grain="week", period_start=datetime.now(UTC).date()
                        - timedelta(days=14 + n % 21), decision="keep", notes="On track.",
                        reviewer=owner) for n, a in enumerate(agents)])
    revops = User.objects.create_user(username="bench-revops", first_name="Rachel",
                                      last_name="RevOps")
    revops.groups.add(Group.objects.get(name=REVOPS))
    client = Client()
    client.force_login(revops)
    name = settings.SESSION_COOKIE_NAME
    return agents, f"{name}={client.cookies[name].value}"


def reuse_data() -> tuple[list, str, int]:
    """The agents and observations of the previous run, and a fresh RevOps session."""
    from django.conf import settings
    from django.test import Client

    from agents.models import Agent
    from metrics.models import Observation
    from portal.models import User

    agents = list(Agent.objects.filter(slug__startswith="bench-agent-").order_by("slug"))
    if not agents:
        sys.exit("Nothing to reuse: run once without STEWARD_BENCH_SCORECARDS_REUSE.")
    client = Client()
    client.force_login(User.objects.get(username="bench-revops"))
    name = settings.SESSION_COOKIE_NAME
    return agents, f"{name}={client.cookies[name].value}", Observation.objects.count()


def _secondary_structures(cursor) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The observation table's foreign keys and unique constraints, and its other indexes."""
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = 'metrics_observation'::regclass AND contype IN ('f', 'u')")
    constraints = cursor.fetchall()
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                   "'metrics_observation' AND indexname NOT IN (SELECT conname FROM "
                   "pg_constraint WHERE conrelid = 'metrics_observation'::regclass)")
    return constraints, cursor.fetchall()


def load_observations(agents: list) -> tuple[int, float]:
    """COPY 40 × 15 × POINTS observations ending now; returns (rows, seconds)."""
    from django.db import connection

    from metrics.models import Metric

    metric_ids = dict(Metric.objects.filter(key__in=[k for k, _v, _s in METRICS])
                      .values_list("key", "id"))
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    step = SPAN / POINTS
    rng = random.Random(5)
    started = time.monotonic()
    rows = 0
    with connection.cursor() as cursor:
        constraints, indexes = _secondary_structures(cursor)
        for name, _definition in constraints:
            cursor.execute(f'ALTER TABLE metrics_observation DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        with cursor.cursor.copy("COPY metrics_observation (agent_id, metric_id, observed_at, "
                                "value, source) FROM STDIN") as copy:
            for number, agent in enumerate(agents):
                offset = timedelta(minutes=number)  # agents report at slightly other times
                stamps = [(end - SPAN + offset + step * i).strftime("%Y-%m-%d %H:%M:%S+00")
                          for i in range(POINTS)]
                for key, typical, spread in METRICS:
                    drift = rng.uniform(-0.3, 0.3) * typical  # each agent trends its own way
                    prefix = f"{agent.pk}\t{metric_ids[key]}\t"
                    lines = []
                    for i, stamp in enumerate(stamps):
                        value = max(0.0, typical + drift * i / POINTS
                                    + spread * rng.gauss(0, 1) * 0.5
                                    + spread * 0.3 * math.sin(i / 80))
                        if key == "user_feedback":
                            value = min(5.0, max(1.0, value))
                        elif key in PERCENT:
                            value = min(100.0, value)
                        lines.append(f"{prefix}{stamp}\t{value:.4f}\tbench\n")
                    copy.write("".join(lines))
                    rows += POINTS
        copied = time.monotonic() - started
        print(f"  {rows:,} observations copied in {copied:.1f} s "
              f"({rows / copied:,.0f} rows/s); recreating indexes and keys…", flush=True)
        for _name, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE metrics_observation ADD CONSTRAINT "{name}" '
                           f"{definition}")
        cursor.execute("VACUUM (ANALYZE) metrics_observation")  # index-only scans need it
    return rows, time.monotonic() - started


# --- rollups -----------------------------------------------------------------------------------

def _last_complete_week() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday() + 7)


def _week_ranges(agent_ids: list[int]) -> list[tuple[int, int, datetime, datetime]]:
    from metrics.models import Metric

    monday = _last_complete_week()
    metric_ids = Metric.objects.filter(key__in=[k for k, _v, _s in METRICS]).values_list(
        "id", flat=True)
    return [(agent_id, metric_id, monday, monday + timedelta(days=7, microseconds=-1))
            for agent_id in agent_ids for metric_id in metric_ids]


def measure_rollups(agents: list) -> dict:
    from django.db import connection

    from metrics import rollups
    from metrics.models import Rollup

    print("Rebuilding every rollup…", flush=True)
    started = time.monotonic()
    rebuilt = rollups.rebuild()
    rebuild_s = time.monotonic() - started
    print(f"  {rebuilt:,} rollups in {rebuild_s:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metrics_rollup")

    one_agent = _week_ranges([agents[len(agents) // 2].pk])
    every_agent = _week_ranges([a.pk for a in agents])
    timings = {}
    for label, ranges in (("one", one_agent), ("all", every_agent)):
        rollups.refresh(ranges)  # warm: plans and buffers
        seconds = []
        for _ in range(REFRESH_REPEATS if label == "one" else 5):
            started = time.perf_counter()
            rollups.refresh(ranges)
            seconds.append(time.perf_counter() - started)
        timings[label] = (len(ranges), seconds)

    merged = rollups.merge(one_agent)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + rollups.refresh_statement("week"),
                       rollups.statement_params(merged))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return {"rebuilt": rebuilt, "rebuild_s": rebuild_s, "timings": timings, "plan": plan,
            "rollups": Rollup.objects.count()}


# --- the pages -------------------------------------------------------------------------------

def page_paths(agents: list) -> dict[str, list[str]]:
    return {"fleet, weeks": ["/metrics/"], "fleet, months": ["/metrics/?grain=month"],
            "agent, weeks": [f"/metrics/{a.slug}/" for a in agents],
            "agent, months": [f"/metrics/{a.slug}/?grain=month" for a in agents]}


def profile_pages(paths: dict[str, list[str]]) -> dict[str, tuple]:
    """In process, one client: (status, queries, queries reading metrics_observation, median
    ms per page, median ms of it in SQL) per page: where a slow page spends its time."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from portal.models import User

    client = Client(raise_request_exception=False)  # a broken page is reported, not fatal
    client.force_login(User.objects.get(username="bench-revops"))
    profiled = {}
    for label, urls in paths.items():
        client.get(urls[0])  # warm caches (catalogue, templates)
        pages, sql = [], []
        for n in range(PROFILE_RENDERS):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                status = client.get(urls[n % len(urls)]).status_code
                pages.append(time.perf_counter() - started)
            sql.append(sum(float(q["time"]) for q in queries))
        raw = sum("metrics_observation" in q["sql"] for q in queries)
        profiled[label] = (status, len(queries), raw, statistics.median(pages) * 1e3,
                           statistics.median(sql) * 1e3)
    return profiled


def check_page(url: str, path: str, cookie: str) -> str:
    """'' when the page answers 200 for the logged-in user, else what went wrong."""
    request = urllib.request.Request(url + path, headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            if "/login" in reply.url:
                return f"redirected to {reply.url}"
            return "" if reply.status == 200 else f"answered {reply.status}"
    except urllib.error.HTTPError as exc:
        return f"answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:  # a timeout included
        return f"did not answer ({exc})"


def drive_pages(env: dict, paths: dict[str, list[str]], cookie: str, var_dir: str) -> dict:
    script = Path(var_dir) / "scorecards.lua"
    script.write_text(gate.GET_PAGES_SCRIPT)
    port = gate.free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(env, port)
    loads: dict[str, object] = {}
    try:
        for label, urls in paths.items():
            problem = check_page(url, urls[0], cookie)
            if problem:
                print(f"  {urls[0]} {problem}: not measured.", flush=True)
                loads[label] = problem
                continue
            path_file = Path(var_dir) / f"paths-{len(loads)}.txt"
            path_file.write_text("".join(f"{p}\t{cookie}\n" for p in urls))
            print(f"Driving {label} ({len(urls)} path{'s' if len(urls) > 1 else ''}): "
                  f"{WARMUP_SECONDS} s warm-up, {SECONDS} s at 1 client and at {CLIENTS}…",
                  flush=True)
            gate.wrk(url, urls[0], cookie, path_file, script, clients=CLIENTS,
                     seconds=WARMUP_SECONDS)
            loads[label] = {clients: gate.wrk(url, urls[0], cookie, path_file, script,
                                              clients=clients, seconds=SECONDS)
                            for clients in (1, CLIENTS)}
    finally:
        stop_server(server)
    return loads


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    """gunicorn as gate.start_gunicorn runs it, but patient with a busy machine (a slow
    /healthz is asked again) and never left running when it does not come up."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(WORKERS), "--worker-class", "sync", "--keep-alive", "30",
         "--backlog", "2048", "--log-level", "warning"], cwd=gate.ROOT, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
                if reply.status == 200:
                    return server
        except OSError:  # refused, reset or timed out while it starts
            time.sleep(0.5)
    stop_server(server)
    sys.exit("gunicorn did not answer /healthz within 90 s.")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a worker stuck in a request: do not leave it behind
        server.kill()
        server.wait()


# --- the run ---------------------------------------------------------------------------------

def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install -y wrk` (make bench does it).",
              file=sys.stderr)
        return 2
    gate.DATABASE_URL, gate.WORKERS, gate.THREADS = DATABASE_URL, WORKERS, 1
    var_dir = tempfile.mkdtemp(prefix="steward-bench-scorecards-")
    env = gate.bench_environment(var_dir)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    if not REUSE:
        print(f"Recreating {DATABASE_URL.rsplit('/', 1)[-1]}…", flush=True)
        gate.recreate_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # pages need the manifest
    if REUSE:
        agents, cookie, rows = reuse_data()
        load_s = 0.0
        print(f"Reusing {rows:,} observations of {len(agents)} agents.", flush=True)
    else:
        agents, cookie = register_agents()
        print(f"Loading {AGENTS} agents × {len(METRICS)} metrics × {POINTS:,} points with "
              "COPY…", flush=True)
        rows, load_s = load_observations(agents)
        print(f"  done in {load_s:.1f} s with indexes, keys and VACUUM ANALYZE", flush=True)
    rollup_figures = measure_rollups(agents)
    paths = page_paths(agents)
    queries = profile_pages(paths)
    connections.close_all()
    loads = drive_pages(env, paths, cookie, var_dir)
    shutil.rmtree(var_dir, ignore_errors=True)
    report(rows, load_s, rollup_figures, queries, loads)
    return 0


def _ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return (f"median {statistics.median(ordered) * 1e3:.1f} ms, "
            f"max {ordered[-1] * 1e3:.1f} ms over {len(ordered)} runs")


def report(rows: int, load_s: float, figures: dict, queries: dict, loads: dict) -> None:
    one_pairs, one = figures["timings"]["one"]
    all_pairs, every = figures["timings"]["all"]
    print()
    print(textwrap.dedent(f"""\
        Steward scorecard benchmark: {rows:,} observations ({AGENTS} agents × {len(METRICS)}
        metrics over two years), {figures['rollups']:,} rollups; PostgreSQL
        {DATABASE_URL.rsplit('/', 1)[-1]}; gunicorn {WORKERS} sync workers, DJANGO_DEBUG=0,
        wrk on loopback at 1 and {CLIENTS} clients, {SECONDS} s each per page after a
        {WARMUP_SECONDS} s warm-up, logged in as RevOps; {os.cpu_count()} CPUs shared by wrk,
        gunicorn and PostgreSQL (load average {os.getloadavg()[0]:.2f} at the end).
        """))
    if load_s:
        print(f"Load: {rows:,} rows in {load_s:.1f} s ({rows / load_s:,.0f} rows/s; COPY, "
              "indexes, keys and VACUUM ANALYZE included)")
    print(f"rebuild(): {figures['rebuilt']:,} rollups in {figures['rebuild_s']:.2f} s")
    print(f"refresh() of one week, one agent ({one_pairs} pairs, both grains): {_ms(one)}")
    print(f"refresh() of one week, every agent ({all_pairs} pairs, both grains): {_ms(every)}")
    print()
    print("EXPLAIN (ANALYZE, BUFFERS) of the week statement, one agent and week:")
    print(textwrap.indent(figures["plan"], "  "))
    print()
    header = (f"{'page':<15} {'queries':>7} {'obs.':>4} {'1 ms':>6} {'SQL ms':>6} "
              f"{'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'non-2xx':>8} {'requests':>9}")
    print(header)
    print("-" * len(header))
    for label, by_clients in loads.items():
        _status, count, raw, page_ms, sql_ms = queries[label]
        prefix = f"{label:<15} {count:>7} {raw:>4} {page_ms:>6.1f} {sql_ms:>6.1f} "
        if isinstance(by_clients, str):
            print(prefix + f"not measured: {by_clients}")
            continue
        for clients, load in by_clients.items():
            print(prefix + f"{clients:>7} {load.rps:>7.1f} {load.p50_ms:>8.1f} "
                  f"{load.p95_ms:>8.1f} {load.p99_ms:>8.1f} {load.failures:>8} "
                  f"{load.requests:>9}")
            prefix = " " * len(prefix)
    print("(in process, one client: queries = SQL statements of a page, obs. = those reading "
          "metrics_observation\n (0: served from rollups), 1 ms = median time of a page, "
          f"SQL ms = the part in the database, over {PROFILE_RENDERS} pages)")
    print()
    print("Targets (issue 5, point 9):")
    median_one = statistics.median(one)
    met = median_one < MAX_WEEK_REFRESH_S
    print(f"  refresh of one week bucket (median)  {median_one * 1e3:7.1f} ms  "
          f"target < {MAX_WEEK_REFRESH_S * 1e3:.0f} ms  {gate.mark(met)}")
    for label, by_clients in loads.items():
        if isinstance(by_clients, str):
            print(f"  p95 {label:<15}                 not measured  target < "
                  f"{MAX_PAGE_P95_MS} ms  MISSED")
            continue
        for clients, load in by_clients.items():
            met = load.p95_ms < MAX_PAGE_P95_MS and load.failures == 0
            print(f"  p95 {label:<15} {clients:>2} client{'s' if clients > 1 else ' '}  "
                  f"{load.p95_ms:7.1f} ms  target < {MAX_PAGE_P95_MS} ms  {gate.mark(met)}")


if __name__ == "__main__":
    sys.exit(main())
