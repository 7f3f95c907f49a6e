"""Shared test fixtures: the cast (alice, bob, victor, wanda, olga, stan) and authenticated clients."""

from __future__ import annotations

import importlib
import logging
import time
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection, connections
from django.db.backends.postgresql import base as postgresql
from django.test import Client, TestCase
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import token_pair_for, user_create

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session", autouse=True)
def _real_services(django_db_setup, django_db_blocker):
    """The suite is meant for PostgreSQL and Redis: refuse to run green on anything else."""
    with django_db_blocker.unblock():
        assert isinstance(connections["default"], postgresql.DatabaseWrapper), "Tests run on PostgreSQL."
    assert not settings.EMBEDDED, "Tests run on Redis: set REDIS_URL (make test does)."


@pytest.fixture(scope="session", autouse=True)
def _statistics_left_alone(django_db_setup, django_db_blocker):
    """No autovacuum on the test database's tables, so no ANALYZE either.

    Tests empty and refill tables all the time (rolled back, flushed): an ANALYZE taken at one of
    those instants left statistics that described another test's data, and plans chosen on them
    made the same dashboard test take 15 s or 100 s depending on what had run before it. Never
    analyzed, a table is planned from its actual size, as it is now.
    """
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT format('ALTER TABLE %I SET (autovacuum_enabled = off)', tablename) "
            "FROM pg_tables WHERE schemaname = current_schema()"
        )
        for (statement,) in cursor.fetchall():
            cursor.execute(statement)


@pytest.fixture(autouse=True)
def _ledger_conserved(request):
    """After every test that uses the database: the whole ledger still adds up.

    It asks for pytest-django's database helper itself, so that its check runs before the test's
    transaction is rolled back (or its tables flushed).
    """
    uses_db = request.node.get_closest_marker("django_db") is not None or any(
        name in request.fixturenames for name in ("db", "transactional_db")
    )
    if not uses_db:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    _ensure_reference_data()
    yield
    from streaming.selectors import charges_health
    from wallets.selectors import ledger_health

    health = ledger_health()
    assert health["healthy"], f"the ledger does not add up after this test: {health}"
    charges = charges_health()
    assert charges["healthy"], f"session charges disagree with the ledger after this test: {charges}"


class _OnCommitErrors(logging.Filter):
    """Collects what Django logs when a robust on_commit callback raises (the callback's error is
    logged, not raised: transaction.on_commit(..., robust=True), which every after-commit step uses).
    A filter on the loggers that log it, not a handler: configuring logging again (django.setup(),
    as importing paygo.asgi does) empties the handlers of their parent's children, not their filters."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "in on_commit()" in record.getMessage():
            self.records.append(record)
        return True


_ON_COMMIT_ERRORS = _OnCommitErrors()
_ON_COMMIT_LOGGERS = ("django.db.backends.base", "django.test")


@pytest.fixture(autouse=True)
def _after_commit_steps_do_not_fail(request):
    """An after-commit step that raises is logged and the request answers: a test fails on it all
    the same, unless it asks for `on_commit_errors` (a failure it causes on purpose)."""
    _ON_COMMIT_ERRORS.records.clear()
    loggers = [logging.getLogger(name) for name in _ON_COMMIT_LOGGERS]
    for logger in loggers:
        logger.addFilter(_ON_COMMIT_ERRORS)
    yield
    for logger in loggers:
        logger.removeFilter(_ON_COMMIT_ERRORS)
    if "on_commit_errors" not in request.fixturenames:
        failed = [record.getMessage() for record in _ON_COMMIT_ERRORS.records]
        assert not failed, f"an on_commit callback raised: {failed}"


@pytest.fixture
def on_commit_errors() -> list[logging.LogRecord]:
    """The errors of the robust on_commit callbacks this test makes fail."""
    return _ON_COMMIT_ERRORS.records


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache: every test starts from zero. Only this process's keys
    go (its KEY_PREFIX, one per xdist worker): cache.clear() would empty the whole Redis database,
    the other workers' keys included."""
    redis = cache._cache.get_client(write=True)
    keys = list(redis.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:*", count=1000))
    if keys:
        redis.delete(*keys)
    yield


@pytest.fixture(autouse=True)
def _settings_put_back():
    """A test leaves Django's settings as it found them. (@override_settings on a test that also
    changes the `settings` fixture: the fixture's teardown, after the decorator's, put back the
    decorator's settings, and the tests after it ran with them, on that worker only.)"""
    before = settings._wrapped
    yield
    assert settings._wrapped is before, "this test left Django's settings changed"


@pytest.fixture
def still_clock():
    """A clock that stands still (time_machine's traveller, to move it by hand). The rate limits
    count in fixed windows (django-ratelimit's, each ending at its own second of the minute or
    hour): a test that counts several requests against one would see its count start again from
    zero whenever a window ended between two of them. A test that counts uses this clock."""
    import time_machine
    from django.utils import timezone

    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def _make(name: str, role: str, **extra) -> User:
    return user_create(email=f"{name}@example.com", password=PASSWORD, name=name.capitalize(), role=role, **extra)


@pytest.fixture
def alice(db) -> User:
    return _make("alice", Role.USER)


@pytest.fixture
def bob(db) -> User:
    """The outsider: a user who owns none of the objects under test."""
    return _make("bob", Role.USER)


@pytest.fixture
def victor(db) -> User:
    return _make("victor", Role.VENDOR)


@pytest.fixture
def wanda(db) -> User:
    """Another vendor."""
    return _make("wanda", Role.VENDOR)


@pytest.fixture
def olga(db) -> User:
    """Staff: a platform admin."""
    return _make("olga", Role.ADMIN)


@pytest.fixture
def stan(db) -> User:
    """Staff with no permissions: he may log into the admin, which refuses him every page.

    Platform admins (role admin) are superusers; a staff member with only the permissions given
    to him is an ordinary user with the staff flag, as the admin's user form makes one.
    """
    return _make("stan", Role.USER, is_staff=True)


def grant(user: User, *permissions: str) -> User:
    """Give `user` Django permissions ("app_label.codename"), as an operator does in the admin's user form.

    Returns the user fetched again: a User object caches the permissions it has read.
    """
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)


class _FormReader(HTMLParser):
    """The values a browser would post from the page's form with this id."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.select, self.textarea = form_id, False, None, None
        self.data: dict[str, list[str]] = {}

    def _add(self, name: str | None, value: str) -> None:
        if name:
            self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        elif not self.inside or "disabled" in attrs:
            return
        elif tag == "input":
            kind = attrs.get("type", "text")
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            self._add(attrs.get("name"), attrs.get("value", "on" if kind in ("checkbox", "radio") else ""))
        elif tag == "select":
            self.select = attrs.get("name")
        elif tag == "option" and self.select and "selected" in attrs:
            self._add(self.select, attrs.get("value", ""))
        elif tag == "textarea":
            self.textarea = attrs.get("name")
            self._add(self.textarea, "")

    def handle_data(self, data):
        if self.inside and self.textarea:
            self.data[self.textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def another_operator() -> Client:
    """The browser of a second platform admin (otto), for what another operator does meanwhile."""
    client = Client()
    client.force_login(_make("otto", Role.ADMIN))
    return client


def admin_form(client, url: str) -> dict[str, list[str]]:
    """What the admin's change page at `url` posts back as the operator's browser sends it (its
    hidden inputs included) when nothing is changed: edit the result, then post it to `url`."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    reader = _FormReader(f"{page.context['opts'].model_name}_form")
    reader.feed(page.content.decode())
    # A textarea's first newline belongs to its markup, not its value (as browsers read it).
    data = {name: [value.removeprefix("\n") for value in values] for name, values in reader.data.items()}
    data.pop("csrfmiddlewaretoken", None)
    return data


@pytest.fixture
def anon() -> APIClient:
    return CommittingAPIClient()


class CommittingAPIClient(APIClient):
    """Runs what a request queued with transaction.on_commit when the request ends, as a real
    committed request would; inside a test's wrapping transaction nothing commits otherwise."""

    def request(self, **kwargs):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().request(**kwargs)


def database_url(name: str | None = None) -> str:
    """The test database (or the database `name` on its server) as a DATABASE_URL, for a process a
    test starts. A host that is a folder (a Unix socket's, as the suite's embedded server has) goes
    %2F-encoded in the path, where django-environ reads one."""
    db = connection.settings_dict
    user, password = quote(db["USER"] or "", safe=""), quote(db["PASSWORD"] or "", safe="")
    host, name = db["HOST"] or "127.0.0.1", name or db["NAME"]
    if host.startswith("/"):
        return f"postgres://{user}:{password}@/{quote(host, safe='')}/{name}"
    return f"postgres://{user}:{password}@{host}:{db['PORT'] or 5432}/{name}"


def client_for(user: User) -> APIClient:
    client = CommittingAPIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user).access}")
    return client


def _ensure_reference_data() -> None:
    """A transactional test flushes every table when it ends, what migrations seed included: the
    next database test puts it back first, whatever its kind (xdist's work stealing runs the
    tests of a worker in no fixed order, so a plain database test may come next)."""
    from wallets.models import Asset

    if not Asset.objects.exists():
        _reseed_reference_data()


def _reseed_reference_data() -> None:
    """Put back what migrations seed (the assets, the system accounts, the categories)."""
    from django.apps import apps

    for migration in (
        "wallets.migrations.0002_seed_assets_and_ledger_guards",
        "wallets.migrations.0024_minimum_withdrawal",
        "marketplace.migrations.0002_seed_categories",
    ):
        importlib.import_module(migration).seed(apps, None)


def money_db(fn=None):
    """Real concurrency on PostgreSQL: committed transactions, each thread its own connection."""
    mark = pytest.mark.django_db(transaction=True)
    return mark(fn) if fn else mark


def in_thread(fn):
    """fn for a thread of a money_db test: its connection (the thread's own) is closed when it returns."""

    def run(*args):
        try:
            return fn(*args)
        finally:
            connection.close()

    return run


def backend_pid() -> int:
    """This thread's PostgreSQL backend, for wait_until_blocked_on_a_lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_blocked_on_a_lock(pids: list[int]) -> None:
    """Poll pg_stat_activity until the backend in `pids` waits on a lock."""
    with connection.cursor() as cursor:
        for _ in range(3000):
            if pids:
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pids[0]])
                row = cursor.fetchone()
                if row and row[0] == "Lock":
                    return
            time.sleep(0.01)
    raise AssertionError("the backend never waited on a lock")


def plans_of(captured, table: str) -> list[tuple[str, str]]:
    """(statement, plan) for each statement of `captured` (a CaptureQueriesContext) that reads `table`:
    the plan PostgreSQL makes when it may not read a table whole (enable_seqscan off), which says
    whether an index serves the statement's predicate, whatever the few rows a test holds (on which
    a sequential scan is the cheapest)."""
    statements = [q["sql"] for q in captured.captured_queries if f'FROM "{table}"' in q["sql"]]
    assert statements, f"no statement read {table}"
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for sql in statements:
                cursor.execute("EXPLAIN " + sql)
                plans.append((sql, "\n".join(line for (line,) in cursor.fetchall())))
        finally:
            cursor.execute("RESET enable_seqscan")
    return plans


@pytest.fixture
def api():
    """api(user) -> an APIClient holding that user's access token."""
    return client_for


# Money fixtures every app's tests use: fund(user, amount) and the Chipi sandbox.
from wallets.tests.conftest import avnu, fund, sandbox  # noqa: E402, F401


def run_task(task, *args, **kwargs):
    """A Celery task run here, as a worker runs it: its answer, or its error raised. (Not
    EagerResult.get()'s default, which refuses while Celery's process-wide "a task is running" flag
    is up: eager runs in other threads of this process, the money tests', can leave it set.)"""
    return task.apply(args=args, kwargs=kwargs).get(disable_sync_subtasks=False)
