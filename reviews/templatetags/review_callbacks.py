"""`{% failed_callbacks agent as failures %}` for the agent's page (its Callbacks section).

A tag rather than view context only because the agent's page belongs to the registry app;
the read itself is `reviews.callbacks.failed_callbacks`: one bounded query.
"""

from django import template

from reviews.callbacks import failed_callbacks as _failed_callbacks

register = template.Library()


@register.simple_tag
def failed_callbacks(agent, limit: int = 5):
    return _failed_callbacks(agent=agent, limit=limit)
