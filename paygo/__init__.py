"""The PayGo project: settings, routing, Celery and the API plumbing every app shares."""

from paygo.celery import app as celery_app

__all__ = ["celery_app"]
