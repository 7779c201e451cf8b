from django.utils.functional import SimpleLazyObject

from portal.roles import ADMINS, REVOPS


def navigation(request) -> dict:
    """What the navigation needs: which role-only entries this user may open."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    groups = {g.name for g in user.groups.all()}
    return {
        "nav_is_admin": user.is_superuser or ADMINS in groups,
        "nav_sees_audit": user.is_superuser or bool(groups & {ADMINS, REVOPS}),
        # Counted only when a full page renders it (not for htmx fragments), up to "99+".
        "nav_waiting": SimpleLazyObject(lambda: _waiting_badge(user)),
        # One query, and only when a full page renders it.
        "nav_alerts": SimpleLazyObject(lambda: _alert_badge(user)),
    }


def _waiting_badge(user) -> str:
    from reviews.selectors import waiting_badge

    return waiting_badge(user)


def _alert_badge(user) -> str:
    from metrics.alert_selectors import alert_badge

    return alert_badge(user)
