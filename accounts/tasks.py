"""Celery tasks of accounts: forgetting sign-ins long over."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(name="accounts.sign_ins_forget", ignore_result=True, time_limit=300, soft_time_limit=280)
def sign_ins_forget_task(days: int = 30) -> int:
    return services.sign_ins_forget(expired_days_ago=days)
