"""Base class for every Steward task.

With late acks and `task_reject_on_worker_lost`, a task whose worker dies is delivered again.
A task that *kills* its worker (out of memory, a segfault in a driver) would then loop
forever, so every delivery is counted in the database and a task id delivered more than
CELERY_TASK_MAX_DELIVERIES times is dropped with an error instead of being run again.
"""

import logging

from celery.contrib.django.task import DjangoTask
from django.conf import settings

logger = logging.getLogger(__name__)


class GuardedTask(DjangoTask):
    abstract = True

    def __call__(self, *args, **kwargs):
        from portal.models import TaskDelivery

        task_id = self.request.id
        if task_id and not self.request.called_directly:
            deliveries = TaskDelivery.begin(task_id=task_id, task_name=self.name)
            if deliveries > settings.CELERY_TASK_MAX_DELIVERIES:
                logger.error(
                    "Task %s[%s] was delivered %s times without finishing; giving up.",
                    self.name, task_id, deliveries,
                )
                TaskDelivery.give_up(task_id=task_id)
                return None
        result = super().__call__(*args, **kwargs)
        if task_id and not self.request.called_directly:
            TaskDelivery.finish(task_id=task_id)
        return result
