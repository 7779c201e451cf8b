"""The built-in metric catalogue, and PostgreSQL statistics on the time buckets."""

from django.db import migrations

# key, name, layer, unit, higher_is_better, aggregation, min, max, derived, headline, description
BUILTIN = [
    ("cycle_time", "Cycle time", "business", "hours", False, "mean", 0, None, False, True,
     "Time from the start of a piece of work to its end."),
    ("conversion_rate", "Conversion rate", "business", "%", True, "mean", 0, 100, False, False,
     "Share of opportunities that convert."),
    ("resolution_rate", "Resolution rate", "business", "%", True, "mean", 0, 100, False, False,
     "Share of cases resolved without a hand-off."),
    ("actions_proposed", "Actions proposed", "business", "count", True, "sum", 0, None, True,
     False, "Actions the agent proposed to the gate."),
    ("accuracy", "Accuracy", "quality", "%", True, "mean", 0, 100, False, True,
     "Share of outputs checked and found correct."),
    ("completeness", "Completeness", "quality", "%", True, "mean", 0, 100, False, False,
     "Share of outputs with every required part."),
    ("policy_compliance", "Policy compliance", "quality", "%", True, "mean", 0, 100, False,
     False, "Share of outputs within policy."),
    ("incidents_per_100", "Incidents per 100 actions", "quality", "count", False, "mean", 0,
     None, True, False, "Problems reported per 100 actions proposed."),
    ("adoption", "Adoption", "trust", "%", True, "mean", 0, 100, False, False,
     "Share of the intended users who use the agent."),
    ("acceptance_rate", "Acceptance rate", "trust", "%", True, "mean", 0, 100, True, True,
     "Reviewed items approved as proposed."),
    ("override_rate", "Override rate", "trust", "%", False, "mean", 0, 100, True, False,
     "Reviewed items edited or rejected."),
    ("user_feedback", "User feedback", "trust", "score 1–5", True, "mean", 1, 5, False, False,
     "Average rating users give the agent's work."),
    ("share_allowed", "Allowed by the gate", "trust", "%", True, "mean", 0, 100, True, False,
     "Share of proposals the gate allowed."),
    ("share_reviewed", "Sent to review", "trust", "%", False, "mean", 0, 100, True, False,
     "Share of proposals the gate sent to a person."),
    ("share_blocked", "Blocked by the gate", "trust", "%", False, "mean", 0, 100, True, False,
     "Share of proposals the gate blocked."),
    ("review_latency", "Median review latency", "trust", "hours", False, "mean", 0, None, True,
     False, "Median time from proposal to a person's decision."),
    ("cost_usd", "Cost", "cost", "USD", False, "sum", 0, None, True, False,
     "Model and tool spend reported with each proposal."),
    ("cost_per_action", "Cost per action", "cost", "USD", False, "mean", 0, None, True, True,
     "Cost divided by actions proposed."),
    ("model_calls", "Model calls", "cost", "count", False, "sum", 0, None, False, False,
     "Calls to language models."),
    ("tokens", "Tokens", "cost", "count", False, "sum", 0, None, True, False,
     "Tokens reported with each proposal."),
]

# Scorecards bucket observations by week and month; statistics on those expressions let the
# planner estimate bucket sizes instead of guessing (PostgreSQL 14+).
STATISTICS = [
    "CREATE STATISTICS IF NOT EXISTS observation_week_bucket ON "
    "(date_trunc('week', observed_at AT TIME ZONE 'UTC')) FROM metrics_observation",
    "CREATE STATISTICS IF NOT EXISTS observation_month_bucket ON "
    "(date_trunc('month', observed_at AT TIME ZONE 'UTC')) FROM metrics_observation",
]


def add_builtins(apps, schema_editor):
    Metric = apps.get_model("metrics", "Metric")
    for position, row in enumerate(BUILTIN, start=1):
        (key, name, layer, unit, higher, aggregation, low, high, derived, headline,
         description) = row
        Metric.objects.update_or_create(key=key, defaults=dict(
            name=name, layer=layer, unit=unit, higher_is_better=higher,
            aggregation=aggregation, min_value=low, max_value=high, derived=derived,
            headline=headline, description=description, builtin=True, position=position))


def add_statistics(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in STATISTICS:
            schema_editor.execute(sql)


def drop_statistics(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP STATISTICS IF EXISTS observation_week_bucket")
        schema_editor.execute("DROP STATISTICS IF EXISTS observation_month_bucket")


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_catalogue")]

    operations = [
        migrations.RunPython(add_builtins, migrations.RunPython.noop),
        migrations.RunPython(add_statistics, drop_statistics),
    ]
