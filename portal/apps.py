from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Steward portal"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from portal import roles

        post_migrate.connect(roles.ensure_role_groups, sender=self)
