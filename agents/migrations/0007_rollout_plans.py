"""Give every agent registered before rollout plans existed its 30-day plan.

The template is copied here as it stood when plans arrived: a migration must not change
when agents/rollout.py does later (plan_for adds tasks the template gains after this).
Nothing is ticked: what an existing agent did before the plan is not known.
"""

from django.db import migrations

# (week, key, title, owner role, automatic check)
TEMPLATE = [
    (1, "owners", "Name the business, process and technical owners", "business",
     "three_owners"),
    (1, "outcome", "Write the business outcome in one sentence", "business", "outcome_written"),
    (1, "workflow", "Choose the workflow and agree when one piece of work is done", "process",
     ""),
    (2, "map", "Map the inputs, decisions, tools, handoffs and exceptions", "process", ""),
    (2, "autonomy", "Set the autonomy level and the approval rules", "process", "autonomy_set"),
    (2, "guardrails", "Define at least three guardrails or quality checks", "technical",
     "guardrails_defined"),
    (2, "rollback", "Write the rollback steps", "technical", "rollback_written"),
    (2, "pauser", "Name a person besides the owners who may pause it", "business",
     "pauser_named"),
    (3, "baseline", "Set targets and measure the human baseline", "business",
     "targets_and_baseline"),
    (3, "tests", "Run controlled tests against the human benchmark", "process", ""),
    (3, "mistakes", "Capture the mistakes found, in categories", "process", ""),
    (4, "launch", "Launch to a small group of users", "process", ""),
    (4, "track", "Track business, quality, trust and cost on the scorecard", "business", ""),
    (4, "first-review", "Record the first scorecard review", "business", "first_review"),
    (4, "decide", "Decide: expand, revise or stop", "business", ""),
]


def create_plans(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    RolloutTask = apps.get_model("agents", "RolloutTask")
    with_plan = set(RolloutTask.objects.values_list("agent_id", flat=True).distinct())
    RolloutTask.objects.bulk_create([
        RolloutTask(agent_id=agent_id, week=week, position=position, key=key, title=title,
                    owner_role=role, auto_check=check)
        for agent_id in Agent.objects.exclude(pk__in=with_plan).values_list("pk", flat=True)
        for position, (week, key, title, role, check) in enumerate(TEMPLATE, start=1)
    ], ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0006_autonomy_versions_rollout"),
    ]

    operations = [
        migrations.RunPython(create_plans, migrations.RunPython.noop),
    ]
