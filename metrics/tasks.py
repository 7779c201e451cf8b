"""Metric work in the background. Tasks are thin: the modules they name do the work."""

from celery import shared_task


@shared_task
def import_batch_run(batch_id: int) -> None:
    """Validate and load one uploaded or pushed batch of observations (metrics.importing)."""
    from metrics import importing

    importing.run(batch_id)


@shared_task
def derived_metrics_compute() -> int:
    """Compute the metrics Steward observes itself from the gate and the inbox (beat:
    derived-metrics). Returns how many observations were written."""
    from metrics import derived

    return derived.compute()
