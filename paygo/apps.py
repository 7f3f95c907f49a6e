from django.apps import AppConfig


class PaygoConfig(AppConfig):
    """The project as an app: its management commands, its checks."""

    name = "paygo"
    verbose_name = "PayGo"

    def ready(self) -> None:
        from paygo import checks  # noqa: F401  (registers them)
