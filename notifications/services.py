"""The write paths of notifications: creating (one user or a broadcast), reading, deleting, preferences,
and the delivery state that the Celery tasks claim and record.

Nothing here talks to the outside world inside a transaction: the socket push and the email and SMS
tasks leave with transaction.on_commit, so notify() may be called inside any other service's
transaction.atomic() and a rollback sends nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import timedelta
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from celery.exceptions import Retry
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Least
from django.utils import timezone
from rest_framework import exceptions

from notifications import selectors
from notifications.consumers import user_group
from notifications.models import (
    DELIVERY_ERROR_MAX_LENGTH,
    MESSAGE_MAX_LENGTH,
    THREAD_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Channel,
    ChannelChoice,
    DeliveryStatus,
    Notification,
    NotificationPreference,
    NotificationType,
    SentForm,
)
from notifications.serializers import notification_payload
from paygo.api.errors import Conflict
from paygo.api.text import without_hidden_characters
from paygo.db import delete_in_batches
from paygo.ws import group_send

logger = logging.getLogger("paygo.notifications")

# How long a worker's claim on a send lasts: longer than the tasks' hard time limit, so that a claim
# only ever expires on a worker that is gone.
CLAIM_DURATION = timedelta(minutes=2)
# Broadcasts insert, and dispatch after commit, this many notifications at a time.
BROADCAST_BATCH = 1000
# Sending to users (the admin's send page and the API's POST) needs this, not just being staff.
SEND_PERMISSION = "notifications.add_notification"
DISPATCH_CHUNK = 500
# The sweeper re-queues a delivery still pending after this long (its task was lost: broker down at
# commit, a worker killed...) and gives up on one this old: a day-old "low balance" SMS misleads.
STUCK_AFTER = timedelta(minutes=30)
GIVE_UP_AFTER = timedelta(hours=24)
SMS_OUTCOME_UNKNOWN = (
    "The worker sending it stopped before Twilio's answer was recorded; Twilio may have sent the message, "
    "so it is not sent again."
)


# --- Creating -------------------------------------------------------------------------------------


def notification_create(
    *,
    user: Any,
    type: str,
    title: str,
    message: str,
    data: dict | None = None,
    sent_by: Any = None,
    thread: str = "",
    coalesce: bool = False,
) -> Notification:
    """Store a notification for `user` (a User or a user id) and, once the caller's transaction
    commits, push it to their sockets and queue the email and SMS their preferences ask for.

    `thread` names the conversation it belongs to. With `coalesce` (a conversation's new message),
    its email and SMS are held back while the user has an unread one of that thread that went out:
    one "you have news" by email until they read it, not one email per message (see _held_back).

    Raises InvalidNotification (a ValueError) for a caller's mistake (unknown type, a title or
    message that shows nothing, data that is not JSON); never for a delivery problem: those are
    recorded on the notification.
    """
    fields = _clean(type=type, title=title, message=message, data=data, thread=thread)
    if not hasattr(user, "pk"):
        user = get_user_model().objects.get(pk=user)
    notification = Notification(user=user, sent_by=sent_by, **fields)
    channels = selectors.channels_for(user.pk, notification.type)
    if coalesce and thread:
        with transaction.atomic():
            _plan_deliveries(notification, user, channels, held_back=_held_back(user.pk, thread))
            notification.save(force_insert=True)
    else:
        _plan_deliveries(notification, user, channels)
        notification.save(force_insert=True)
    transaction.on_commit(partial(notifications_dispatch, [notification]), robust=True)
    return notification


def _thread_lock(user_id: int, thread: str) -> None:
    """A lock on the user's thread until the transaction ends (call inside transaction.atomic):
    a new notification of it, and reading it, one after the other."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"notifications.thread:{user_id}:{thread}"]
        )


def _held_back(user_id: int, thread: str) -> bool:
    """Whether the user has an unread notification of `thread` that went out (by email or SMS, or is
    on its way): one they dismissed is dealt with, and one held back itself holds nothing (left
    unread by a read-all at the instant it was stored, it held back every later one, and nothing
    reached them again though what had was read).

    Decided under the thread's lock: of two notifications of one thread at once, the second waits
    until the first commits or rolls back and sees it, so that they cannot both be emailed."""
    _thread_lock(user_id, thread)
    went_out = [DeliveryStatus.PENDING, DeliveryStatus.SENT]
    unread = selectors.notification_list_for(user_id, read=False).filter(thread=thread)
    return unread.filter(Q(email_status__in=went_out) | Q(sms_status__in=went_out)).exists()


def notification_broadcast(
    *, role: str, type: str, title: str, message: str, data: dict | None = None, sent_by: Any = None
) -> int:
    """One notification to every active user of `role`; how many were created.

    Set-based: a batch of users, their preferences and the inserts are one query each per
    BROADCAST_BATCH users. Pushes and deliveries leave after commit through Celery, DISPATCH_CHUNK
    notifications per task, so a large broadcast does not hold up the request.
    """
    fields = _clean(type=type, title=title, message=message, data=data)
    User = get_user_model()
    if role not in {value for value, _ in User._meta.get_field("role").choices}:
        raise InvalidNotification("role", f"{role!r} is not a role.")
    recipients = User.objects.filter(role=role, is_active=True).only("pk", "email", "phone", "is_verified", "is_active")
    created: list[int] = []
    with transaction.atomic():
        last_pk = 0
        while batch := list(recipients.filter(pk__gt=last_pk).order_by("pk")[:BROADCAST_BATCH]):
            last_pk = batch[-1].pk
            channels = selectors.channels_for_users([user.pk for user in batch], fields["type"])
            rows = []
            for user in batch:
                row = Notification(user=user, sent_by=sent_by, **fields)
                _plan_deliveries(row, user, channels[user.pk])
                rows.append(row)
            created.extend(row.pk for row in Notification.objects.bulk_create(rows))
        transaction.on_commit(partial(_dispatch_later, created), robust=True)
    logger.info("Broadcast %r to %d active %s(s), sent by %s", fields["title"], len(created), role, sent_by)
    return len(created)


def notification_send(
    *,
    sent_by: Any,
    type: str,
    title: str,
    message: str,
    data: dict | None = None,
    user_id: int | None = None,
    role: str | None = None,
    form_token: str | None = None,
) -> int:
    """Staff sending, from the API or the admin: to one active user, or to every active user of a role.

    `form_token`, the one the admin's send form was served with, sends it once: the same form sent
    again (a double click, a reload that sends it again) raises AlreadySent and sends nothing. The
    token is recorded in the transaction that creates the notifications: a second request waits on
    it until the first commits (then AlreadySent) or rolls back (then it sends)."""
    if (user_id is None) == (role is None):
        raise exceptions.ValidationError("Give either a user or a role.")
    with transaction.atomic():
        if form_token is not None:
            sent_form = _form_claim(form_token, sent_by)
        if role is not None:
            sent = notification_broadcast(
                role=role, type=type, title=title, message=message, data=data, sent_by=sent_by
            )
        else:
            user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
            if user is None:
                raise exceptions.ValidationError({"user_id": ["No active user with this id."]})
            notification_create(user=user, type=type, title=title, message=message, data=data, sent_by=sent_by)
            sent = 1
        if form_token is not None:
            sent_form.recipients = sent
            sent_form.save(update_fields=["recipients"])
    return sent


class AlreadySent(Conflict):
    """A send form that was sent already (notification_send's form_token): nothing sent again."""

    default_code = "already_sent"

    def __init__(self, recipients: int):
        self.recipients = recipients
        super().__init__(f"This form was sent already, to {recipients} user(s): nothing was sent again.")


def _form_claim(form_token: str, sent_by: Any) -> SentForm:
    try:
        with transaction.atomic():
            return SentForm.objects.create(form_token=form_token, sent_by=sent_by)
    except IntegrityError:
        raise AlreadySent(SentForm.objects.get(form_token=form_token).recipients) from None


class InvalidNotification(exceptions.ValidationError, ValueError):
    """A notification its caller got wrong (an unknown type or role, a title or message that shows
    nothing, data that is not a JSON object), naming the field: a 400 when a request reaches it, and
    for notify()'s callers in other apps the ValueError it always was (a bug of theirs)."""

    def __init__(self, field: str, message: str):
        super().__init__({field: [message]}, code="invalid")


def _clean(*, type: str, title: str, message: str, data: dict | None, thread: str = "") -> dict[str, Any]:
    if type not in NotificationType.values:
        raise InvalidNotification("type", f"{type!r} is not a notification type.")
    if not isinstance(thread, str) or len(thread) > THREAD_MAX_LENGTH:
        raise InvalidNotification("thread", f"A thread is named by at most {THREAD_MAX_LENGTH} characters.")
    # Nothing in them hides or reorders what follows: a name or other text written before the rule
    # of visible text (paygo.api.text) held it, put in by the caller, read as other words ("\u202e"
    # made "troppuS oGyaP" read "PayGo Support" in a "... sent you ..." message and its email).
    # One line: the title is also an email subject, where a newline is an injected header.
    title = " ".join(without_hidden_characters(str(title)).split())
    message = without_hidden_characters(str(message), multiline=True).strip()
    if not title:
        raise InvalidNotification("title", "A notification needs a title of visible characters.")
    if not message:
        raise InvalidNotification("message", "A notification needs a message of visible characters.")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidNotification("data", "Notification data must be a dict.")
    try:
        # What the JSON column will hold, so that the socket push and a later read agree.
        data = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    except TypeError as exc:
        raise InvalidNotification("data", f"Notification data must be JSON-serialisable: {exc}") from None
    return {
        "type": NotificationType(type).value,
        "title": _truncate(title, TITLE_MAX_LENGTH),
        "message": _truncate(message, MESSAGE_MAX_LENGTH),
        "data": data,
        "thread": thread,
    }


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unreachable_reason(user: Any, channel: str) -> str:
    """Why `user` cannot be reached on `channel` right now; empty when they can."""
    if not user.is_active:
        return "The account is not active."
    if channel == Channel.EMAIL and not user.email:
        return "The account has no email address."
    if channel == Channel.SMS and not (user.is_verified and user.phone):
        return "No verified phone number."
    return ""


HELD_BACK = "Not sent: an unread notification of the same conversation was already sent."


def _plan_deliveries(
    notification: Notification, user: Any, channels: ChannelChoice, *, held_back: bool = False
) -> None:
    """Each channel's delivery: not requested (the user's preferences), skipped (the user cannot be
    reached there, or `held_back`: see notification_create's coalesce), or pending."""
    for channel in Channel:
        if not getattr(channels, channel):
            status, reason = DeliveryStatus.NOT_REQUESTED, ""
        else:
            reason = unreachable_reason(user, channel) or (HELD_BACK if held_back else "")
            status = DeliveryStatus.SKIPPED if reason else DeliveryStatus.PENDING
        setattr(notification, f"{channel}_status", status)
        setattr(notification, f"{channel}_error", reason)


# --- After commit: the socket push and the delivery tasks ------------------------------------------


def notifications_dispatch(notifications: Iterable[Notification]) -> None:
    """Push each (committed) notification to its owner's sockets and queue its pending deliveries.

    Never raises: a channel layer or broker outage is logged, the notification stays stored, and a
    delivery whose task could not be queued is picked up by the stuck-delivery sweeper.
    """
    from notifications import tasks  # tasks import this module

    notifications = list(notifications)
    messages = [
        (user_group(n.user_id), {"type": "notification.created", "notification": notification_payload(n)})
        for n in notifications
    ]
    try:
        async_to_sync(_group_send_all)(messages)
    except Exception:
        logger.exception("Could not push %d notification(s) to sockets", len(messages))
    for notification in notifications:
        for channel in Channel:
            if getattr(notification, f"{channel}_status") == DeliveryStatus.PENDING:
                _enqueue(tasks.DELIVERY_TASKS[channel], notification.pk)


async def _group_send_all(messages: list[tuple[str, dict]]) -> None:
    for group, message in messages:
        try:
            await group_send(group, message)
        except Exception:
            logger.exception("Could not push a notification to %s", group)


def _dispatch_later(notification_ids: list[int]) -> None:
    from notifications import tasks

    for start in range(0, len(notification_ids), DISPATCH_CHUNK):
        _enqueue(tasks.dispatch_notifications, notification_ids[start : start + DISPATCH_CHUNK])


def _enqueue(task, *args: Any) -> None:
    try:
        task.delay(*args)
    except Retry:
        # Embedded mode runs tasks eagerly, where a retry cannot wait out its countdown: the
        # delivery stays pending and the stuck-delivery sweeper tries again.
        logger.info("%s%r will be retried by the stuck-delivery sweeper", task.name, args)
    except Exception:
        logger.exception("Could not queue %s%r; the stuck-delivery sweeper will", task.name, args)


# --- The owner's changes ----------------------------------------------------------------------------


def notification_mark_read(*, notification: Notification, read: bool) -> Notification:
    if notification.read != read:
        notification.read = read
        notification.read_at = timezone.now() if read else None
        notification.save(update_fields=["read", "read_at"])
    return notification


# Read-all marks this many at a time, each batch its own statement (and transaction).
READ_ALL_BATCH = 1000


def notification_read_all(*, user: Any) -> int:
    """Mark every unread notification of the user read; how many changed.

    In batches of READ_ALL_BATCH, walking the unread index down by id from the newest unread one: no
    statement reads or locks more than a batch (one UPDATE of a vendor's two million unread was a
    sequential scan that held their rows for three minutes), each batch commits on its own (a request
    cut short keeps what it did, and the next read-all goes on from there), and one that arrives
    meanwhile, above where the walk started, stays unread, as under a single UPDATE's snapshot."""
    unread = selectors.notification_list_for(user, read=False).order_by("-pk")
    now = timezone.now()
    updated, below = 0, None
    while True:
        batch = unread if below is None else unread.filter(pk__lt=below)
        ids = list(batch.values_list("pk", flat=True)[:READ_ALL_BATCH])
        if ids:
            updated += Notification.objects.filter(pk__in=ids, read=False).update(read=True, read_at=now)
        if len(ids) < READ_ALL_BATCH:
            return updated
        below = ids[-1]


def notifications_read_in(*, user: Any, thread: str) -> int:
    """Mark the user's unread notifications of `thread` read (they read the conversation itself);
    how many changed. Its next new message is emailed again.

    Under the thread's lock: one being stored at that instant is waited for and read too (else it
    stayed unread, held back every later one, and none was emailed though all had been read)."""
    with transaction.atomic(savepoint=False):  # a caller's transaction, if any, is the lock's
        _thread_lock(user.pk, thread)
        unread = selectors.notification_list_for(user, read=False).filter(thread=thread)
        return unread.update(read=True, read_at=timezone.now())


def notification_delete(*, notification: Notification) -> None:
    """Gone from the owner's inbox; kept, with its delivery record, for operators."""
    notification.deleted_at = timezone.now()
    notification.save(update_fields=["deleted_at"])


def notification_preferences_update(*, user: Any, changes: dict[str, dict[str, bool]]) -> dict[str, ChannelChoice]:
    """Change some channels of some types (others keep their value); every type's channels after."""
    defaults = selectors.preferences_for(user)
    now = timezone.now()
    with transaction.atomic():
        for type, channels in changes.items():
            chosen = {channel: bool(channels[channel]) for channel in Channel.values if channel in channels}
            if not chosen:
                continue
            # Only the channels given are written, under the row lock update_or_create takes, so two
            # concurrent changes to different channels both land.
            NotificationPreference.objects.update_or_create(
                user=user,
                type=type,
                defaults={**chosen, "updated_at": now},
                create_defaults={**asdict(defaults[type]), **chosen, "updated_at": now},
            )
    return selectors.preferences_for(user)


# --- Delivery state: claimed and recorded by the Celery tasks ---------------------------------------


def _claim_free(channel: str, now) -> Q:
    return Q(**{f"{channel}_claimed_until__isnull": True}) | Q(**{f"{channel}_claimed_until__lte": now})


def _not_being_sent(channel: str) -> dict[str, Any]:
    """An SMS's mark of a request to Twilio (email has none): a filter, or the update that clears it."""
    return {"sms_sending_at": None} if channel == Channel.SMS else {}


def delivery_claim(*, notification_id: int, channel: str) -> Notification | None:
    """Take the send of a pending delivery for CLAIM_DURATION; None when it is not ours to send
    (already sent, failed, skipped, not requested, or claimed by another worker).

    An SMS whose claim expired while it was being sent (its worker died; the broker redelivers an
    acks_late task) is recorded as failed here instead: Twilio may have sent it."""
    now = timezone.now()
    claimable = Notification.objects.filter(
        _claim_free(channel, now), pk=notification_id, **{f"{channel}_status": DeliveryStatus.PENDING}
    )
    claimed = claimable.filter(**_not_being_sent(channel)).update(
        **{f"{channel}_claimed_until": now + CLAIM_DURATION, f"{channel}_attempts": F(f"{channel}_attempts") + 1}
    )
    if not claimed:
        if channel == Channel.SMS:
            _fail_abandoned_sms(claimable)
        return None
    return Notification.objects.select_related("user").get(pk=notification_id)


def delivery_sms_sending(*, notification_id: int) -> None:
    """Mark a claimed SMS as requested from Twilio, just before the request: from here a worker that
    dies leaves it failed, not pending (see _fail_abandoned_sms). Called outside any transaction, so
    that the mark is committed before the request leaves."""
    Notification.objects.filter(pk=notification_id, sms_status=DeliveryStatus.PENDING).update(
        sms_sending_at=timezone.now()
    )


def _fail_abandoned_sms(notifications: QuerySet[Notification]) -> int:
    """Record as failed the pending SMS among `notifications` that a worker was requesting from Twilio
    when its claim expired (a claim outlives the tasks' hard time limit: the worker is gone). Twilio
    may have taken it, and a second request would send it twice, so it is not sent again."""
    return notifications.filter(
        _claim_free(Channel.SMS, timezone.now()), sms_status=DeliveryStatus.PENDING, sms_sending_at__isnull=False
    ).update(sms_status=DeliveryStatus.FAILED, sms_error=SMS_OUTCOME_UNKNOWN, sms_claimed_until=None)


def delivery_finish(*, notification_id: int, channel: str, status: str, error: str = "", sms_sid: str = "") -> bool:
    """Record the end of a claimed delivery: sent, failed or skipped."""
    updates: dict[str, Any] = {
        f"{channel}_status": status,
        f"{channel}_error": error[:DELIVERY_ERROR_MAX_LENGTH],
        f"{channel}_claimed_until": None,
    }
    if status == DeliveryStatus.SENT:
        updates[f"{channel}_sent_at"] = timezone.now()
    if sms_sid:
        updates["sms_sid"] = sms_sid
    pending = Notification.objects.filter(pk=notification_id, **{f"{channel}_status": DeliveryStatus.PENDING})
    return bool(pending.update(**updates))


def delivery_release(*, notification_id: int, channel: str, error: str) -> None:
    """Give a claimed delivery back after an error that can heal; it stays pending for the retry.

    The error says the provider did not take it (refused, unreachable, or not yet asked): an SMS's
    mark of a request to Twilio goes too."""
    Notification.objects.filter(pk=notification_id, **{f"{channel}_status": DeliveryStatus.PENDING}).update(
        **{f"{channel}_error": error[:DELIVERY_ERROR_MAX_LENGTH], f"{channel}_claimed_until": None},
        **_not_being_sent(channel),
    )


def delivery_is_claimed(*, notification_id: int, channel: str) -> bool:
    return (
        Notification.objects.filter(pk=notification_id, **{f"{channel}_status": DeliveryStatus.PENDING})
        .exclude(_claim_free(channel, timezone.now()))
        .exists()
    )


def delivery_retry_failed(*, notifications: QuerySet[Notification]) -> int:
    """Operators: send the failed deliveries of these notifications again; how many were re-queued."""
    from notifications import tasks

    queued = 0
    with transaction.atomic():
        for channel in Channel:
            failed = f"{channel}_status"
            ids = list(notifications.filter(**{failed: DeliveryStatus.FAILED}).values_list("pk", flat=True))
            # An operator's choice, an SMS whose outcome was unknown included: it may arrive twice.
            Notification.objects.filter(pk__in=ids, **{failed: DeliveryStatus.FAILED}).update(
                **{failed: DeliveryStatus.PENDING, f"{channel}_error": "", f"{channel}_claimed_until": None},
                **_not_being_sent(channel),
            )
            for pk in ids:
                transaction.on_commit(partial(_enqueue, tasks.DELIVERY_TASKS[channel], pk), robust=True)
            queued += len(ids)
    return queued


def delivery_requeue_stuck(*, limit: int = 1000) -> dict[str, int]:
    """The sweeper: re-queue deliveries pending too long with no live claim; give up on old ones.

    An SMS whose worker died while requesting it from Twilio is neither: it is recorded as failed,
    whatever its age (outcome_unknown)."""
    from notifications import tasks

    now = timezone.now()
    counts = {"requeued": 0, "given_up": 0, "outcome_unknown": _fail_abandoned_sms(Notification.objects.all())}
    for channel in Channel:
        unclaimed = Notification.objects.filter(
            _claim_free(channel, now), **{f"{channel}_status": DeliveryStatus.PENDING}
        )
        counts["given_up"] += unclaimed.filter(created_at__lt=now - GIVE_UP_AFTER).update(
            **{
                f"{channel}_status": DeliveryStatus.FAILED,
                f"{channel}_error": f"Not delivered within {GIVE_UP_AFTER.total_seconds() / 3600:g} hours; given up.",
            }
        )
        stuck = list(
            unclaimed.filter(created_at__lt=now - STUCK_AFTER)
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        for pk in stuck:
            _enqueue(tasks.DELIVERY_TASKS[channel], pk)
        counts["requeued"] += len(stuck)
    if any(counts.values()):
        logger.warning("Stuck deliveries: %s", counts)
    return counts


# --- Retention --------------------------------------------------------------------------------------

# Retention deletes this many notifications per statement, and a run stops after this long: the
# next hour's run goes on from there.
EXPIRE_BATCH = 5000
EXPIRE_RUN_SECONDS = 120


def notifications_expire(*, batch: int = EXPIRE_BATCH) -> int:
    """Delete the notifications read or dismissed more than NOTIFICATION_RETENTION_DAYS ago, and any
    created more than NOTIFICATION_UNREAD_RETENTION_DAYS ago, unread ones included (hourly,
    notifications.expire); how many went.

    Notifications are messages, not records: what they told is kept for good elsewhere (the ledger and
    the wallet's history, the sessions, the consultations), and what was read or dismissed is kept a
    while for support to see what reached whom. Unread ones are kept far longer, as nobody has seen
    them, but not for ever: a vendor who never opens the inbox must not keep it growing by a hundred
    thousand rows a day.

    `batch` ids at a time, found through an index (notifications_done_idx, then notifications_created_idx)
    with a LIMIT, then deleted by id, each batch a DELETE (and a transaction) of its own: no statement
    reads or locks more than a batch (paygo.db.delete_in_batches)."""
    now = timezone.now()
    done = (
        Notification.objects.filter(Q(read=True) | Q(deleted_at__isnull=False))  # notifications_done_idx's condition
        .alias(done_at=Least("read_at", "deleted_at"))
        .filter(done_at__lt=now - timedelta(days=settings.NOTIFICATION_RETENTION_DAYS))
    )
    old = Notification.objects.filter(created_at__lt=now - timedelta(days=settings.NOTIFICATION_UNREAD_RETENTION_DAYS))
    deadline = time.monotonic() + EXPIRE_RUN_SECONDS
    # Oldest first, in the order of the index that finds them. (One marked unread in the instant
    # between a batch's two statements goes all the same: read long ago.)
    deleted = sum(
        delete_in_batches(expired, batch=batch, until=deadline)
        for expired in (done.order_by("done_at"), old.order_by("created_at"))
    )
    if deleted:
        logger.info("Retention: %d notification(s) deleted", deleted)
    return deleted
