"""Start-up and deploy checks of the project: what would otherwise fail later, on a page."""

from __future__ import annotations

from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def static_manifest_problem() -> str | None:
    """Why pages cannot be served (with DEBUG off every {% static %} needs collectstatic's manifest,
    else it raises: a 500 on the first admin page), or None."""
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return None
    if staticfiles_storage.manifest_storage.exists(staticfiles_storage.manifest_name):
        return None
    where = staticfiles_storage.manifest_storage.path(staticfiles_storage.manifest_name)
    return (
        f"No static files manifest at {where}: run `python manage.py collectstatic --noinput` "
        "(with the same STATIC_ROOT) before starting the web process."
    )


def require_static_manifest() -> None:
    """The web entry points (asgi.py, wsgi.py) refuse to start rather than answer 500s."""
    problem = static_manifest_problem()
    if problem:
        raise ImproperlyConfigured(problem)


@checks.register(checks.Tags.staticfiles, deploy=True)
def check_static_manifest(app_configs, **kwargs) -> list[checks.CheckMessage]:
    problem = static_manifest_problem()
    return [checks.Error(problem, id="paygo.E001")] if problem else []
