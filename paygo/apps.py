from django.apps import AppConfig


class PaygoConfig(AppConfig):
    """The project as an app: its management commands, its checks, and its sockets closed at an
    admin logout."""

    name = "paygo"
    verbose_name = "PayGo"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from paygo import checks  # noqa: F401  (registers them)

        # The admin's logout is Django's own view: its signal is where the sockets its session
        # opened are closed (paygo/ws.py), in whichever process serves the admin.
        user_logged_out.connect(_admin_logged_out, dispatch_uid="paygo.admin_logged_out")


def _admin_logged_out(sender, request, user, **kwargs) -> None:
    from paygo.ws import admin_logged_out

    admin_logged_out(sender, request, user, **kwargs)
