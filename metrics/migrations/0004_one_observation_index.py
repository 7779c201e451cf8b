"""One index for observations: the natural key, led by (agent, observed_at) and carrying the
value, replaces the natural key and the separate covering index (see metrics.models)."""

from django.db import migrations, models

# SQLite cannot keep INCLUDE columns, so Django creates no constraint there at all (W039):
# a plain unique index keeps the natural key (and ON CONFLICT) working on a first run.
SQLITE_INDEX = "observation_natural_key_sqlite"


def sqlite_natural_key(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            f"CREATE UNIQUE INDEX {SQLITE_INDEX} ON metrics_observation "
            "(agent_id, observed_at, metric_id, source)")


def drop_sqlite_natural_key(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(f"DROP INDEX IF EXISTS {SQLITE_INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0007_rollout_plans'),
        ('metrics', '0003_alerts'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='observation',
            name='observation_natural_key',
        ),
        migrations.RemoveIndex(
            model_name='observation',
            name='observation_agent_time',
        ),
        migrations.AddConstraint(
            model_name='observation',
            constraint=models.UniqueConstraint(fields=('agent', 'observed_at', 'metric', 'source'), include=('value',), name='observation_natural_key'),
        ),
        migrations.RunPython(sqlite_natural_key, drop_sqlite_natural_key),
    ]
