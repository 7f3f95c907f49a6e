from django.apps import AppConfig


class ChipiSandboxConfig(AppConfig):
    """The Chipi gateway package; as an app it owns only the sandbox's simulated chain tables."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "wallets.chipi"
    label = "chipi_sandbox"
    verbose_name = "Chipi sandbox"

    def ready(self) -> None:
        # Importing registers the deploy check.
        from wallets.chipi.checks import log_sandbox_at_start

        log_sandbox_at_start()
