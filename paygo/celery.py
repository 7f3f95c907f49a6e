"""The Celery app; tasks are discovered in every installed app's tasks.py."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")

app = Celery("paygo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
