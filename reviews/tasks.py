from celery import shared_task

from reviews import services


@shared_task
def budget_warnings_send() -> list[str]:
    """Beat: e-mail the owners of agents past 80% of their monthly budget (once a month)."""
    return services.budget_warnings_send()
