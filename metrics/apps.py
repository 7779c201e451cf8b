from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Metrics and scorecards"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(ensure_builtin_metrics, sender=self)


def ensure_builtin_metrics(sender=None, apps=None, **kwargs) -> None:
    """Create any built-in metric that is missing (migration 0002 made them; a test database
    flushed between tests has lost them). Existing metrics are left as admins set them."""
    import importlib

    from metrics.models import Metric

    builtin = importlib.import_module("metrics.migrations.0002_builtin_metrics")
    have = set(Metric.objects.values_list("key", flat=True))
    for position, row in enumerate(builtin.BUILTIN, start=1):
        (key, name, layer, unit, higher, aggregation, low, high, derived, headline,
         description) = row
        if key not in have:
            Metric.objects.create(
                key=key, name=name, layer=layer, unit=unit, higher_is_better=higher,
                aggregation=aggregation, min_value=low, max_value=high, derived=derived,
                headline=headline and not Metric.objects.filter(layer=layer,
                                                                headline=True).exists(),
                description=description, builtin=True, position=position)
