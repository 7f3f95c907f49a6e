"""The README's production steps, run as an operator runs them: manage.py in a fresh process with a
clean environment and DEBUG off (the suite itself runs with DEBUG on, so nothing here can be
checked in-process).

Each test starts Django in a subprocess (about a second each): refusing to start without secrets or a
Chipi choice, `check --deploy` clean, `collectstatic` with the manifest storage, the admin login page
served with hashed static URLs, no setting falling back to a development default.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import importlib.util
import json
import logging
import logging.config
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import websocket

from conftest import PASSWORD, database_url

ROOT = Path(__file__).resolve().parents[2]
# collectstatic (the static_root fixture, run by whichever test comes first) takes minutes on a busy
# machine: past the suite's 120 s per test.
pytestmark = pytest.mark.timeout(600)

SECRETS = {
    "SECRET_KEY": "prod-secret-key-" + "k" * 40,
    "JWT_SECRET": "prod-jwt-secret-" + "j" * 40,
}
CHIPI_KEYS = {"CHIPI_WEBHOOK_SECRET": "whsec_prod_test", "CHIPI_KEY_ENCRYPTION_KEY": "master-" + "m" * 40}
LIVE_CHIPI = {"CHIPI_API_KEY": "pk_prod_test", "CHIPI_SECRET_KEY": "sk_prod_test", **CHIPI_KEYS}
SANDBOX_CHIPI = {"CHIPI_SANDBOX": "1", "CHIPI_SECRET_KEY": "sk_prod_sandbox", **CHIPI_KEYS}


def production_env(static_root: Path | None = None, **extra: str) -> dict[str, str]:
    """What an operator sets (the README's table), on top of a clean environment."""
    env = {
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "ALLOWED_HOSTS": "paygo.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://paygo.example.com",
        "DEBUG": "0",
        **SECRETS,
        **LIVE_CHIPI,
    }
    if static_root is not None:
        env["STATIC_ROOT"] = str(static_root)
    env |= extra
    return {name: value for name, value in env.items() if value is not None}


def run(args: list[str], env: dict[str, str], *, timeout: float = 90) -> subprocess.CompletedProcess:
    """`args` in a fresh interpreter with only `env` (and PATH) in its environment."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout, check=False
    )


def manage(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return run(["manage.py", *args], env, timeout=timeout)


def loaded_settings(env: dict[str, str]) -> dict:
    """The settings a production process loads, and which modules loading them imported."""
    script = (
        "import json, sys; from django.conf import settings; from wallets.chipi.gateway import sandbox_in_use;"
        "print(json.dumps({'DEBUG': settings.DEBUG, 'SECRET_KEY': settings.SECRET_KEY,"
        " 'JWT_SECRET': settings.JWT_SECRET, 'SIGNING_KEY': settings.SIMPLE_JWT['SIGNING_KEY'],"
        " 'CHIPI_SECRET_KEY': settings.CHIPI_SECRET_KEY, 'CHIPI_SANDBOX': settings.CHIPI_SANDBOX,"
        " 'sandbox_in_use': sandbox_in_use(), 'staticfiles': settings.STORAGES['staticfiles']['BACKEND'],"
        " 'DEMO_DATA_ALLOWED': settings.DEMO_DATA_ALLOWED, 'ALLOWED_HOSTS': settings.ALLOWED_HOSTS,"
        " 'CORS_ALLOWED_ORIGINS': settings.CORS_ALLOWED_ORIGINS, 'CSRF_TRUSTED_ORIGINS': settings.CSRF_TRUSTED_ORIGINS,"
        " 'dev_secrets_imported': 'paygo.dev_secrets' in sys.modules}))"
    )
    loaded = manage("shell", "--no-imports", "-c", script, env=env)
    assert loaded.returncode == 0, loaded.stderr
    return json.loads(loaded.stdout.strip().splitlines()[-1])


# --- Refusing to start --------------------------------------------------------------------------


def test_without_debug_and_without_secrets_it_refuses_to_start():
    """DEBUG unset is production: no constant secret to forge tokens with."""
    env = production_env()
    for name in ("DEBUG", "SECRET_KEY", "JWT_SECRET"):
        env.pop(name)

    loaded = manage("check", env=env)

    assert loaded.returncode != 0
    assert "ImproperlyConfigured" in loaded.stderr
    assert "SECRET_KEY" in loaded.stderr
    assert "required when DEBUG is off" in loaded.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_SECRET", "DATABASE_URL", "REDIS_URL"])
def test_each_secret_and_service_is_required_with_debug_off(missing):
    """No secret is a constant, and no production process falls back to the embedded database (an
    empty one in var/) or to one-process Redis stand-ins that its other processes would not share."""
    env = production_env()
    env.pop(missing)

    loaded = manage("check", env=env)

    assert loaded.returncode != 0
    assert f"Set the {missing} environment variable" in loaded.stderr


def test_without_a_chipi_key_and_without_choosing_the_sandbox_it_refuses_to_start():
    env = production_env(CHIPI_API_KEY=None, CHIPI_SECRET_KEY=None)

    loaded = manage("check", env=env)

    assert loaded.returncode != 0
    assert "ImproperlyConfigured" in loaded.stderr
    assert "CHIPI_API_KEY" in loaded.stderr
    assert "CHIPI_SANDBOX=1" in loaded.stderr


def test_the_sandbox_chosen_with_debug_off_needs_its_webhook_secret_from_the_environment():
    env = production_env(CHIPI_API_KEY=None, CHIPI_SECRET_KEY=None, CHIPI_SANDBOX="1")

    loaded = manage("check", env=env)

    assert loaded.returncode != 0
    assert "CHIPI_SECRET_KEY" in loaded.stderr


def test_a_key_and_the_sandbox_both_chosen_is_refused():
    loaded = manage("check", env=production_env(CHIPI_SANDBOX="1"))

    assert loaded.returncode != 0
    assert "CHIPI_SANDBOX" in loaded.stderr
    assert "CHIPI_API_KEY" in loaded.stderr


# --- Started with everything set ----------------------------------------------------------------


def test_no_setting_falls_back_to_a_development_default():
    loaded = loaded_settings(production_env(DEBUG=None, ALLOWED_HOSTS=None))

    assert loaded["DEBUG"] is False
    assert loaded["SECRET_KEY"] == SECRETS["SECRET_KEY"]
    assert loaded["JWT_SECRET"] == loaded["SIGNING_KEY"] == SECRETS["JWT_SECRET"]
    assert loaded["CHIPI_SECRET_KEY"] == LIVE_CHIPI["CHIPI_SECRET_KEY"]
    assert loaded["CHIPI_SANDBOX"] is False
    assert loaded["sandbox_in_use"] is False
    assert loaded["staticfiles"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert loaded["DEMO_DATA_ALLOWED"] is False  # seed_demo's published password stays out
    assert (loaded["ALLOWED_HOSTS"], loaded["CORS_ALLOWED_ORIGINS"]) == ([], [])  # named by the operator only
    # The module that generates and reads the development secrets (var/) is not even imported.
    assert loaded["dev_secrets_imported"] is False


def test_the_origins_trusted_for_forms_are_read_with_debug_on_too():
    """README: CSRF_TRUSTED_ORIGINS in both modes (an admin opened through a proxy's origin in
    development); it was read only with DEBUG off."""
    loaded = loaded_settings(production_env(DEBUG="1", CSRF_TRUSTED_ORIGINS="https://admin.example.test"))

    assert loaded["DEBUG"] is True
    assert loaded["CSRF_TRUSTED_ORIGINS"] == ["https://admin.example.test"]


def test_the_sandbox_runs_with_debug_off_only_when_chosen():
    loaded = loaded_settings(production_env(CHIPI_API_KEY=None, **SANDBOX_CHIPI))

    assert loaded["CHIPI_SANDBOX"] is True
    assert loaded["sandbox_in_use"] is True
    assert loaded["CHIPI_SECRET_KEY"] == SANDBOX_CHIPI["CHIPI_SECRET_KEY"]
    assert loaded["dev_secrets_imported"] is False


@pytest.fixture(scope="session")
def static_root(tmp_path_factory, worker_id) -> Path:
    """`collectstatic` with the manifest storage, once for the whole run: the first of the
    parallel workers to need it collects while the others wait on a lock, then all serve from it
    (read only)."""
    run_dir = tmp_path_factory.getbasetemp()
    shared = run_dir if worker_id == "master" else run_dir.parent  # the workers' common folder
    root = shared / "static"
    with (shared / "static.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "staticfiles.json").is_file():
            # It compresses every file but the source maps (Swagger UI's too): some seconds of CPU.
            collected = manage("collectstatic", "--noinput", env=production_env(root), timeout=600)
            assert collected.returncode == 0, collected.stderr
            assert (root / "staticfiles.json").is_file()
    return root


def test_collectstatic_with_the_manifest_storage(static_root):
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]

    hashed = manifest["dashboards/vendor/chart.umd.min.js"]
    assert re.fullmatch(r"dashboards/vendor/chart\.umd\.min\.[0-9a-f]{12}\.js", hashed)
    assert (static_root / hashed).is_file()
    assert "admin/css/base.css" in manifest
    # Only the hashed names are kept (pages link to nothing else), compressed for WhiteNoise to
    # serve; a source map is kept, uncompressed (only a developer's browser tools fetch it).
    assert not (static_root / "dashboards/vendor/chart.umd.min.js").exists()
    assert (static_root / f"{hashed}.br").is_file() and (static_root / f"{hashed}.gz").is_file()
    source_map = manifest["drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js.map"]
    assert (static_root / source_map).is_file()
    assert not (static_root / f"{source_map}.br").exists() and not (static_root / f"{source_map}.gz").exists()


def test_check_deploy_is_clean(static_root):
    checked = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(static_root))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout


def test_check_deploy_warns_that_the_sandbox_is_in_use(static_root):
    env = production_env(static_root, CHIPI_API_KEY=None, **SANDBOX_CHIPI)

    checked = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert checked.returncode != 0
    output = checked.stdout + checked.stderr
    assert "(chipi.W001)" in output
    assert "CHIPI_SANDBOX" in output
    assert "identified 1 issue" in output  # and nothing else


@pytest.mark.parametrize("database", ["unreachable", "not migrated"])
def test_check_deploy_reads_the_treasury_key_only_where_there_are_wallets_to_read(tmp_path, database):
    """wallets.E001 (the treasury's key does not open) reads the database: one that does not answer,
    or holds no tables yet, is migrate's to report, not a crash of the checks."""
    url = "postgres://postgres@127.0.0.1:9/paygo" if database == "unreachable" else database_url("postgres")
    env = production_env(tmp_path / "never-collected", DATABASE_URL=url, DATABASE_POOL_TIMEOUT="1")

    checked = manage("check", "--deploy", env=env)

    assert "(paygo.E001)" in checked.stderr, checked.stderr  # the checks ran: no manifest here
    assert "identified 1 issue" in checked.stderr, checked.stderr  # and nothing else
    assert "Traceback" not in checked.stderr


ADMIN_LOGIN = """
import json
from django.test import Client
response = Client().get("/admin/login/", secure=True, headers={"host": "paygo.example.com"})
print(json.dumps([response.status_code, response.content.decode()]))
"""


def test_the_admin_login_page_is_served_with_debug_off(static_root):
    served = manage("shell", "--no-imports", "-c", ADMIN_LOGIN, env=production_env(static_root))

    assert served.returncode == 0, served.stderr
    status, page = json.loads(served.stdout.strip().splitlines()[-1])  # logs go to stdout too
    assert status == 200, page
    assert re.search(r'href="/static/admin/css/base\.[0-9a-f]{12}\.css"', page)
    assert 'href="/static/admin/css/base.css"' not in page


def test_without_the_manifest_the_web_process_refuses_to_start(tmp_path):
    env = production_env(tmp_path / "never-collected")

    started = run(["-c", "import paygo.asgi"], env)

    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr
    assert "collectstatic" in started.stderr


def test_without_the_manifest_check_deploy_says_so(tmp_path):
    checked = manage("check", "--deploy", env=production_env(tmp_path / "never-collected"))

    assert checked.returncode != 0
    assert "(paygo.E001)" in checked.stderr
    assert "collectstatic" in checked.stderr


def test_with_the_manifest_the_web_process_starts(static_root):
    started = run(["-c", "import paygo.asgi, paygo.wsgi"], production_env(static_root))

    assert started.returncode == 0, started.stderr


# --- make prod: the production shape on one machine (scripts/prod.py) ------------------------------


def _free_port() -> int:
    """A port for make prod's nginx: free on every address, as prod.py checks it, and below the
    kernel's ephemeral range (Linux's ip_local_port_range), which bind(0) and connect() draw from, so
    that no other process is handed it in the half minute before nginx listens. (One that bind(0)
    gave on 127.0.0.1 and released could be a client's on 127.0.0.2 already, and prod.py refused
    it as taken, or become another process's next port before nginx listened.)"""
    if "prod" not in sys.modules:  # scripts/prod.py, imported as the prod_py fixture imports it
        spec = importlib.util.spec_from_file_location("prod", ROOT / "scripts" / "prod.py")
        sys.modules["prod"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["prod"])
    ephemeral_from = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = range(10000, ephemeral_from)
    for _ in range(100):
        port = random.choice(ports)
        if sys.modules["prod"].port_taken(port) is None:
            return port
    raise RuntimeError(f"no free port between {ports.start} and {ports.stop - 1}")


def _request(
    port: int, method: str, path: str, body: dict | None = None, *, source: str = "127.0.0.1", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        reply = connection.getresponse()
        return reply.status, {name.lower(): value for name, value in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def prod_py_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """scripts/prod.py run to its end in a fresh process with only `env` (and PATH)."""
    return run(["scripts/prod.py", "--no-collectstatic", *args], env)


def _still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.status() != psutil.STATUS_ZOMBIE:  # ended, not reaped yet by whoever adopted it
                running.append(process)
    return running


def _wait_gone(processes: list[psutil.Process], seconds: float = 60.0) -> list[psutil.Process]:
    """Those of `processes` still running after at most `seconds` (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while (running := _still_running(processes)) and time.monotonic() < deadline:
        psutil.wait_procs(running, timeout=0.5)
    return running


def _hangups_not_ignored() -> None:
    """prod.py as a terminal starts it: a SIGHUP stops it. Under nohup (or any runner that ignores
    hangups) pytest's children inherit SIGHUP ignored, and prod.py leaves it so, by that choice:
    the SIGHUP test's stack went on running until it was killed."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def prod_says(line: str) -> str:
    """What prod.py itself says on `line` of its output (a record of its logger with LOG_JSON, else a
    plain `prod: ` line); "" for another process's line."""
    try:
        record = json.loads(line)
    except ValueError:
        return line.removeprefix("prod: ") if line.startswith("prod: ") else ""
    return record.get("message", "") if isinstance(record, dict) and record.get("logger") == "prod" else ""


@contextlib.contextmanager
def make_prod(env: dict[str, str], *, stop_with: signal.Signals = signal.SIGINT):
    """scripts/prod.py (what `make prod` runs) in a fresh process with only `env` (and PATH), from
    its "serving on" line to the end of the block, then `stop_with` (Ctrl-C unless told); yields
    (the process, what it printed up to then; the rest of what it prints, to its end, is added to
    that list once it stopped). Every process it started is gone afterwards.
    static_root (the fixture) is collected already: --no-collectstatic."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env}
    prod = subprocess.Popen(
        [sys.executable, "scripts/prod.py", "--no-collectstatic"],
        cwd=ROOT,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_hangups_not_ignored,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=lambda: [*map(lines.put, prod.stdout), lines.put(None)], daemon=True)
    reader.start()
    output: list[str] = []
    children: list[psutil.Process] = []
    try:
        while not any(prod_says(line).startswith("serving on") for line in output):
            try:
                line = lines.get(timeout=180)  # a bound on a broken start, not a measurement
            except queue.Empty:
                pytest.fail("make prod did not serve in 180 s; it printed:\n" + "".join(output))
            if line is None:
                pytest.fail(
                    f"make prod ended (exit {prod.wait(timeout=60)}) before it served; it printed:\n" + "".join(output)
                )
            output.append(line)
        children = psutil.Process(prod.pid).children(recursive=True)
        yield prod, output
    finally:
        prod.send_signal(stop_with)
        try:
            prod.wait(timeout=60)
        except subprocess.TimeoutExpired:
            prod.kill()
            raise
        finally:
            left = []
            for process in _wait_gone(children):  # nothing stays behind for the next tests, whatever this finds
                with contextlib.suppress(psutil.NoSuchProcess):
                    left.append(" ".join(process.cmdline()))
                    process.kill()
    assert not left, f"still running after {stop_with.name}: {left}"
    # Everything the stack printed as it stopped: the pipe ends once the last of its processes is gone.
    reader.join(timeout=60)
    output.extend(line for line in iter(lines.get_nowait, None))


@pytest.mark.django_db(transaction=True)
def test_make_prod_serves_http_and_websockets_behind_its_proxy_and_stops_on_a_hangup(static_root, alice):
    """Served through nginx; a SIGHUP (its terminal closed, an ssh session dropped) stops every process
    as Ctrl-C does (the same handler: test_production_edge's stack is stopped with a SIGKILL)."""
    port = _free_port()
    env = production_env(
        static_root,
        CHIPI_API_KEY=None,
        **SANDBOX_CHIPI,
        DATABASE_URL=database_url(),  # the suite's database, migrated already
        PORT=str(port),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",  # plain http here: no TLS in front
        WEB_WORKERS="2",
        CELERY_CONCURRENCY="2",
        TEST_FAST_PASSWORD_HASHER="1",  # the hasher alice's password was stored with
        CACHE_KEY_PREFIX=os.environ.get("CACHE_KEY_PREFIX"),
        CHANNEL_LAYER_PREFIX=os.environ.get("CHANNEL_LAYER_PREFIX"),
    )
    with make_prod(env, stop_with=signal.SIGHUP) as (prod, output):
        children = psutil.Process(prod.pid).children(recursive=True)
        assert set(_KINDS) <= {kind for child in children for kind in _KINDS if kind in " ".join(child.cmdline())}
        # The sweep in as many shards as the worker runs tasks at once (each bills its vendors' wallets).
        assert "celery worker x2 and beat, the billing sweep in 2 shards;" in output[-1]
        worker = next(child for child in children if "paygo worker" in " ".join(child.cmdline()))
        assert worker.environ()["BILLING_SWEEP_SHARDS"] == "2"
        # REST through nginx to the WSGI workers.
        status, _, body = _request(port, "POST", "/api/v1/auth/login", {"email": alice.email, "password": PASSWORD})
        assert status == 200, body
        token = json.loads(body)["token"]
        status, headers, body = _request(port, "GET", "/api/v1/wallet/balance", Authorization=f"Bearer {token}")
        assert status == 200, body
        assert headers["server"] == "nginx"
        assert {"token": "USDC", "balance": "0.000000"}.items() <= json.loads(body)["balances"][0].items()

        # X-Forwarded-For is nginx's word only: a client (here 127.0.0.2) that writes its own is
        # still counted as itself, in one rate-limit window whatever address it claims.
        remaining = [
            _request(port, "GET", "/api/v1/health", source="127.0.0.2", **{"X-Forwarded-For": claimed})[1]["ratelimit"]
            for claimed in ("10.1.1.1", "10.2.2.2")
        ]
        left = [int(re.search(r'"read-ip";r=(\d+)', value).group(1)) for value in remaining]
        assert left[1] == left[0] - 1

        # A WebSocket through nginx to Daphne.
        socket_ = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/notifications/?token={token}", timeout=30)
        assert socket_.getstatus() == 101
        socket_.close()

        # A body over nginx's limit, refused from its declared length alone: nginx logs an error.
        status, _, body = _request(port, "POST", "/api/v1/auth/login", **{"Content-Length": "999999999"})
        assert status == 413, body
    assert prod.returncode == 0, "".join(output)  # stopped, every process with it (make_prod)

    # One stream an operator's log pipeline parses: every line every process wrote, from the
    # migrations to the last process's exit, is one JSON object with its level and message...
    records = log_records(output)
    # ... and each process wrote some: the steps before (passed on by prod.py), gunicorn, Daphne's
    # access log, the Celery worker (its SIGTERM too) and beat, nginx's error log, prod.py itself.
    loggers = {record["logger"]: record for record in records}
    assert {"prod.migrate", "prod.check", "gunicorn.error", "daphne.access", "celery.beat", "nginx"} <= loggers.keys()
    said = [(record["logger"], record["level"], record["message"]) for record in records]
    # check --deploy's warnings (the sandbox, plain http) as one record, at their level.
    assert loggers["prod.check"]["level"] == "WARNING"
    assert "(chipi.W001)" in loggers["prod.check"]["message"]
    assert ("gunicorn.error", "INFO", "Shutting down: Master") in said
    assert ("paygo.celery", "INFO", "worker: Warm shutdown (SIGTERM)") in said
    assert any(m.endswith(" ready.") for logger, _, m in said if logger == "celery.apps.worker")
    assert any("client intended to send too large body" in m for *who, m in said if who == ["nginx", "ERROR"])
    assert said[-1] == ("prod", "INFO", "stopped.")


def log_records(output: list[str]) -> list[dict]:
    """`output`'s lines as the log records they are (the app's LOGGING with LOG_JSON); fails on any
    line that is not one."""
    records, not_records = [], []
    for line in output:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and {"time", "level", "logger", "message"} <= record.keys():
            records.append(record)
        else:
            not_records.append(line)
    assert not not_records, f"{len(not_records)} of {len(output)} lines are no JSON log record:\n" + "".join(
        not_records
    )
    return records


_KINDS = ("nginx", "gunicorn", "paygo.server", "paygo worker", "paygo beat")  # as their command lines say


def test_make_prod_refuses_to_start_without_allowed_hosts():
    """With DEBUG off and no ALLOWED_HOSTS every request would be a 400 (Invalid HTTP_HOST)."""
    started = prod_py_run(production_env(ALLOWED_HOSTS=None, PORT=str(_free_port())))

    assert started.returncode != 0
    assert "prod: ALLOWED_HOSTS is empty and DEBUG is off" in started.stderr
    assert "nothing was started" in started.stderr
    assert "manage.py" not in started.stdout  # refused before the migrations


def test_make_prod_fails_at_once_with_what_a_stack_that_did_not_start_printed():
    """A stack that ends before it serves fails the test with prod.py's own words: it waited three
    minutes for a "serving on" line that could no longer come, then said only queue.Empty."""
    env = production_env(ALLOWED_HOSTS=None, PORT=str(_free_port()))

    with (
        pytest.raises(
            pytest.fail.Exception, match=r"(?s)ended \(exit 1\) before it served.*prod: ALLOWED_HOSTS is empty"
        ),
        make_prod(env),
    ):
        pass


def test_make_prod_refuses_a_port_another_process_listens_on():
    """An earlier stack's nginx, or anything else: its answers would pass for ours."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        started = prod_py_run(production_env(ALLOWED_HOSTS="127.0.0.1", PORT=str(port)))

    assert started.returncode != 0
    assert f"port {port} is taken, by process {os.getpid()} ({' '.join(psutil.Process().cmdline())[:60]}" in (
        started.stderr
    )
    assert "nothing was started" in started.stderr
    assert "manage.py" not in started.stdout


def test_the_readiness_wait_takes_only_an_answer_from_its_own_process(prod_py):
    """Another process answering on the port while ours is not listening (nginx retries a bind
    for seconds before it gives up) is not "serving"."""
    owner = prod_py.Process("nginx", [sys.executable, "-c", "import sys; sys.stdin.read()"], {})
    owner.popen = subprocess.Popen(owner.args, stdin=subprocess.PIPE)
    try:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]

            with pytest.raises(RuntimeError, match=f"nginx does not listen on port {port} after 0.5 s"):
                prod_py.wait_for_port(port, owner, [owner], seconds=0.5)  # a bound, not a measurement
    finally:
        owner.popen.stdin.close()
        owner.popen.wait(timeout=30)


def test_the_children_of_make_prod_end_with_it_even_when_it_is_killed(prod_py):
    """SIGKILL leaves prod.py no chance to stop anything: its children get SIGTERM from the kernel."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, prod; child = prod.spawn([sys.executable, '-c', 'import time; time.sleep(600)'], {}); "
            "print(child.pid, flush=True); sys.stdin.read()",
        ],
        cwd=ROOT / "scripts",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.is_running()

    parent.kill()
    parent.wait(timeout=30)

    left = _wait_gone([child])
    for process in left:
        process.kill()
    assert not left


def json_formatter() -> logging.Formatter:
    """The settings' JSON formatter, as their LOGGING makes it (LOG_JSON: production's)."""
    from django.conf import settings

    return logging.config.DictConfigurator({}).configure_formatter(dict(settings.LOGGING["formatters"]["json"]))


def test_a_traceback_stays_inside_its_json_record():
    """A record logged with its exception is one line: the traceback is its `exc_info` field, never
    lines of its own that a log pipeline would take for records."""
    try:
        raise ValueError("the sweep failed")
    except ValueError:
        record = logging.LogRecord("streaming", logging.ERROR, __file__, 1, "sweep %s", ("7",), sys.exc_info())

    line = json_formatter().format(record)

    assert "\n" not in line
    logged = json.loads(line)
    assert {"level": "ERROR", "logger": "streaming", "message": "sweep 7"}.items() <= logged.items()
    assert logged["exc_info"].startswith("Traceback (most recent call last):")
    assert logged["exc_info"].endswith("ValueError: the sweep failed")


def test_make_prod_passes_a_steps_output_on_as_records(prod_py, capsys):
    """What a manage.py step prints, as prod.py passes it on: its log records as they are, each run
    of its other lines (a report, a traceback) as one record."""
    step = logging.getLogger("prod.migrate")
    handler = logging.StreamHandler(sys.stdout)  # prod.py's handler writes where its print()s go
    handler.setFormatter(json_formatter())
    step.addHandler(handler)
    already = json.dumps({"time": "t", "level": "WARNING", "logger": "paygo.chipi", "message": "sandbox"})
    printed = f"Traceback (most recent call last):\n  File 'x'\nKeyError: 1\n{already}\n\n"
    try:
        step.propagate = False  # this process's own logging is not prod.py's
        prod_py.pass_on(printed, step, logging.ERROR)
    finally:
        step.removeHandler(handler)
        step.propagate = True

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert {"level": "ERROR", "logger": "prod.migrate"}.items() <= first.items()
    assert first["message"] == "Traceback (most recent call last):\n  File 'x'\nKeyError: 1"
    assert lines[1] == already
