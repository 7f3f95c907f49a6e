"""The production shape on one machine (`make prod`): every process the README's Production section
runs, started together after the migrations, and stopped together.

    DATABASE_URL=... REDIS_URL=... SECRET_KEY=... JWT_SECRET=... CHIPI_...=... .venv/bin/python scripts/prod.py

nginx listens on PORT (8000) and passes HTTP to gunicorn's sync WSGI workers (WEB_WORKERS, two per
core and one more) and WebSockets (/ws/) to Daphne (paygo.server), both on ports of 127.0.0.1 bound
here and handed to them; a Celery worker (CELERY_CONCURRENCY, one process per core) and Celery beat run beside them. The
configuration of nginx is deploy/nginx.conf, filled in here; its files go to var/prod/PORT/. Behind
a TLS proxy, TLS_PROXIES names its addresses: nginx believes what scheme they say the client used,
and no one else's (none by default). The settings are the environment's: nothing here turns DEBUG
or the Chipi sandbox on.

Each process gets its own pool of database connections (DATABASE_POOL_MAX_SIZE, unless set, per kind
of process below); their total is printed, to set against PostgreSQL's max_connections. Ctrl-C (or
SIGTERM, SIGHUP, SIGQUIT) stops every process, the proxy first; if any of them exits on its own, the
others are stopped too and this exits non-zero. Should this process end without stopping them (a
SIGKILL, a crash), the kernel sends each of them SIGTERM (Linux): a stack is never left running,
billing, without the process that answers for it.

It refuses to start, before anything is done, when PORT is taken (by an earlier stack's nginx, say)
or when the settings answer no host (ALLOWED_HOSTS empty with DEBUG off: every request a 400); such a
refusal is a plain line on stderr and the exit status 1.

Logs: every process writes to this process's stdout and stderr, one stream. With LOG_JSON (the
settings' default with DEBUG off) every line from the migrations on is one JSON object, in the
settings' LOGGING format: the app's processes log so themselves (paygo.gunicorn, paygo.server,
paygo.celery); nginx's error log, which has no such format, and what the manage.py steps print, are
passed on here as records (loggers `nginx` and `prod.<command>`), and so is what this process says
(logger `prod`). Without it (DEBUG=1 make prod), plain lines, as the app's.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import ipaddress
import json
import logging
import logging.config
import os
import re
import resource
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_SECONDS = 15.0

# Connections each kind of process may hold: a sync worker serves one request at a time; Daphne runs
# its sockets' database calls on a pool of threads; a Celery worker process runs one task at a time.
POOL_SIZES = {"web": 2, "ws": 8, "worker": 2, "beat": 1}

# gunicorn kills a sync worker at a request for longer than this (seconds); deploy/nginx.conf's
# proxy_read_timeout is longer, so that nginx never answers while a worker goes on to commit.
WEB_TIMEOUT_SECONDS = 60

# Celery as the worker and beat run: --quiet leaves out the banners they printed (plain text) before
# they logged; they log as the settings say (paygo/celery.py), so no --loglevel (LOG_LEVEL decides).
CELERY = (PYTHON, "-m", "celery", "--quiet", "-A", "paygo")

# Each stops everything: Ctrl-C, SIGTERM (systemd, docker stop), SIGHUP (the terminal closed, an ssh
# session dropped: the children, in sessions of their own, get none), SIGQUIT (Ctrl-\).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class StopRequested(Exception):
    """A stop signal arrived while the processes were starting."""


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    popen: subprocess.Popen | None = None


def _die_with_parent() -> Callable[[], None] | None:
    """What a child runs before its program (Linux): the kernel sends it SIGTERM when this process
    ends, however it ends, and each child stops its own (gunicorn its workers, nginx its own)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: nothing to load between fork and exec
    parent = os.getpid()

    def preexec() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # this process ended before the line above: no signal would come
            os._exit(1)

    return preexec


def spawn(args: list[str], env: dict[str, str], pass_fds: Sequence[int] = (), stderr=None) -> subprocess.Popen:
    """A child in a session of its own (Ctrl-C in the terminal reaches this process only, which stops
    the children in order), that ends with this process."""
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
        pass_fds=pass_fds,
        stderr=stderr,
    )


def port_taken(port: int) -> str | None:
    """Why nginx could not listen on `port` (on every address, as deploy/nginx.conf says), naming the
    process that does when it is visible; None when the port is free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds: TIME_WAIT is free
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 (a probe of nginx's own address, closed at once)
            return None
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                return f"port {port} cannot be listened on ({error.strerror})"
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            try:
                holder = " ".join(psutil.Process(connection.pid).cmdline())
            except psutil.Error:
                continue
            return f"port {port} is taken, by process {connection.pid} ({holder[:120]})"
    return f"port {port} is taken, by a process of another user"


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a listening socket on `port`."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def upstream_listener() -> socket.socket:
    """A socket listening on a port of 127.0.0.1 that the kernel chose, for one of the app's servers:
    bound here and handed to it (gunicorn's fd://, Daphne's --fd). A port chosen here, released, and
    bound by the server seconds later (Daphne binds once Django is loaded) could be handed to another
    process meanwhile, and the server exited at its start ("address in use"). Connections made
    before the server is ready wait in the backlog."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)  # gunicorn's default backlog (it listens again with its own)
    return listener


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        sys.exit("prod: nginx is not installed (`bash scripts/ensure-services.sh nginx` installs it; make prod does).")
    return found


# What nginx must know of the app's settings, read from them (their defaults live there alone).
EDGE_SETTINGS = (
    "API_MAX_UPLOAD_BYTES",
    "DATA_UPLOAD_MAX_MEMORY_SIZE",
    "CORS_ALLOWED_ORIGINS",
    "CORS_EXPOSE_HEADERS",
    "MEDIA_ROOT",
)
# And what decides whether the stack can answer anyone at all.
START_SETTINGS = ("DEBUG", "ALLOWED_HOSTS", "LOG_JSON", "LOGGING")
# An origin as nginx's map may name it: scheme://host[:port] (django-cors-headers checks the same), or
# "null" (a sandboxed page's).
ORIGIN = re.compile(r"null|[a-z][a-z0-9+.-]*://[a-z0-9._:\[\]-]+")


def app_settings(env: dict[str, str]) -> dict:
    names = (*EDGE_SETTINGS, *START_SETTINGS)
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {names!r}}}, default=str))"
    )
    found = subprocess.run(
        [PYTHON, "-c", script],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "paygo.settings", **env},
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        sys.exit(f"prod: the settings do not load; nothing was started.\n{found.stderr}")
    return json.loads(found.stdout.splitlines()[-1])


def listed(env: dict[str, str], name: str) -> list[str]:
    """The entries of a comma-separated variable, blanks left out."""
    return [entry.strip() for entry in env.get(name, "").split(",") if entry.strip()]


def tls_proxies(env: dict[str, str]) -> list[str]:
    """TLS_PROXIES: the addresses or networks (comma-separated) of the TLS proxies in front of nginx,
    the only peers whose X-Forwarded-Proto nginx passes on. None by default: nginx says its own scheme."""
    networks = []
    for entry in listed(env, "TLS_PROXIES"):
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            sys.exit(f"prod: TLS_PROXIES names {entry!r}, which is neither an IP address nor a network (10.0.0.0/8).")
    return networks


def trusted_proxies(env: dict[str, str], tls: Sequence[str]) -> str:
    """The app's TRUSTED_PROXIES: the operator's, nginx's address (127.0.0.1, where it connects from),
    and the TLS proxies in front of nginx, whose X-Forwarded-For entries are then read past too (else
    every client behind them counted as the proxy's one address)."""
    return ",".join(dict.fromkeys([*listed(env, "TRUSTED_PROXIES"), "127.0.0.1", *tls]))


# The files each nginx worker may open (deploy/nginx.conf's OPEN_FILES), unless the system allows fewer.
NGINX_OPEN_FILES = 65536


def nginx_open_files() -> int:
    """NGINX_OPEN_FILES, or the hard limit this process (and nginx, started from it) has if that is
    lower: above it each worker's setrlimit failed, with an alert at every start."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NGINX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(NGINX_OPEN_FILES, hard)


def render_nginx(run_dir: Path, *, port: int, web: str, ws: str, settings: dict, tls: Sequence[str] = ()) -> Path:
    template = string.Template((ROOT / "deploy" / "nginx.conf").read_text())
    # nginx's map compares strings ignoring case, and refuses one named twice: each origin once.
    origins = list(dict.fromkeys(origin.lower() for origin in settings["CORS_ALLOWED_ORIGINS"]))
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            sys.exit(f"prod: CORS_ALLOWED_ORIGINS names {origin!r}, which is no origin (scheme://host[:port]).")
    media_root = str(settings["MEDIA_ROOT"]).rstrip("/")
    if not media_root.startswith("/") or any(char in media_root for char in '"$\\\n'):
        sys.exit(f'prod: MEDIA_ROOT is {media_root!r}: nginx takes an absolute path without ", $, \\ or a newline.')
    # safe_substitute: nginx's own $variables stay as they are; ours are all filled (checked below).
    text = template.safe_substitute(
        RUN_DIR=str(run_dir),
        OPEN_FILES=str(nginx_open_files()),
        PORT=str(port),
        WEB_ADDRESS=web,
        WS_ADDRESS=ws,
        MAX_BODY_BYTES=str(settings["API_MAX_UPLOAD_BYTES"]),
        MAX_JSON_BYTES=str(settings["DATA_UPLOAD_MAX_MEMORY_SIZE"]),
        CORS_ORIGINS=" ".join(f'"{origin}" $http_origin;' for origin in origins),
        CORS_EXPOSE_HEADERS=", ".join(settings["CORS_EXPOSE_HEADERS"]),
        MEDIA_ROOT=media_root,
        TLS_PROXIES=" ".join(f"{network} 1;" for network in tls),
    )
    assert "${" not in text, "deploy/nginx.conf names a value prod.py does not fill in"
    path = run_dir / "nginx.conf"
    path.write_text(text)
    return path


log = logging.getLogger("prod")


def start_logging(settings: dict) -> None:
    """What this process says, and passes on, in the settings' JSON format (their LOGGING's formatter:
    one stream with the app's processes) when LOG_JSON is on, else as plain `prod: ...` lines."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,  # this module's `log` among them
            "formatters": {
                "json": settings["LOGGING"]["formatters"]["json"],
                "plain": {"format": "%(name)s: %(message)s"},
            },
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "json" if settings["LOG_JSON"] else "plain",
                }
            },
            "root": {"handlers": ["stdout"], "level": "INFO"},
        }
    )


def is_record(line: str) -> bool:
    """Whether `line` is a log record already (a JSON object, as the app's processes write them)."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def pass_on(text: str, logger: logging.Logger, level: int) -> None:
    """A process's output onto this stream: its log records as they are, and each run of its other
    lines (a command's report, a traceback) as one record of `logger` at `level`."""
    plain: list[str] = []

    def flush() -> None:
        if "".join(plain).strip():
            logger.log(level, "\n".join(plain).strip("\n"))
        plain.clear()

    for line in text.splitlines():
        if is_record(line):
            flush()
            print(line, flush=True)
        else:
            plain.append(line)
    flush()


# nginx's error log lines: "2026/01/02 03:04:05 [warn] 12#12: *3 ...", or "nginx: [emerg] ..." before
# it read its configuration.
NGINX_LINE = re.compile(r"(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |nginx: )\[(\w+)\] (.*)")
NGINX_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emerg": logging.CRITICAL,
}


def pass_on_nginx(stream) -> None:
    """nginx's error log (its stderr, bytes) as records of logger `nginx`, with its level, until it
    closes: nginx has no JSON format for it (log_format is for access logs, which it keeps none of)."""
    logger = logging.getLogger("nginx")
    for raw in stream:
        line = raw.decode("utf-8", "backslashreplace").rstrip("\n")
        if matched := NGINX_LINE.fullmatch(line):
            logger.log(NGINX_LEVELS.get(matched[1], logging.ERROR), matched[2])
        elif line:
            logger.error(line)


def manage(*args: str, env: dict[str, str], json_lines: bool) -> None:
    log.info("manage.py %s", " ".join(args))
    if json_lines:
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        logger = logging.getLogger(f"prod.{args[0]}")
        pass_on(done.stdout, logger, logging.INFO if done.returncode == 0 else logging.ERROR)
        pass_on(done.stderr, logger, logging.WARNING if done.returncode == 0 else logging.ERROR)
    else:
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env)
    if done.returncode != 0:
        log.error("manage.py %s failed; nothing was started.", args[0])
        sys.exit(1)


def _still_starting(processes: list[Process], stopping: Callable[[], bool]) -> None:
    """A start's wait ends at a stop signal, or when any of `processes` exits."""
    if stopping():
        raise StopRequested
    for process in processes:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode} while starting")


def wait_for_port(
    port: int,
    owner: Process,
    processes: list[Process],
    seconds: float = 60.0,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Until `owner` listens on `port` and answers there. An answer from another process is not
    `owner`'s (nginx retries a taken port for seconds before it exits, while whatever holds the port
    answers); any of `processes` exiting, or a stop signal, ends the wait."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _still_starting(processes, stopping)
        if listens(owner.popen.pid, port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"{owner.name} does not listen on port {port} after {seconds:g} s")


def wait_for_answer(
    port: int,
    processes: list[Process],
    seconds: float = 60.0,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Until the server on `port` (its socket bound here, so no other process's) answers an HTTP
    request, whatever its status: a socket handed over listens from the start, and its server
    accepts once it is ready. Any of `processes` exiting, or a stop signal, ends the wait."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _still_starting(processes, stopping)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET /api/v1/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if probe.recv(1):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port} after {seconds:g} s")


def stop(processes: list[Process]) -> None:
    """SIGTERM to each (the proxy first, so that nothing new comes in), then SIGKILL what remains."""
    for process in processes:
        if process.popen and process.popen.poll() is None:
            os.killpg(process.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        if not process.popen:
            continue
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killed", process.name, STOP_SECONDS)
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-collectstatic",
        action="store_true",
        help="STATIC_ROOT already holds this release's files (collectstatic compresses them: some seconds of CPU)",
    )
    options = parser.parse_args()
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not env.get(name):
            sys.exit(f"prod: set {name} (the production shape runs on PostgreSQL and Redis; README, Production).")
    port = int(env.get("PORT") or 8000)
    cores = os.cpu_count() or 1
    web_workers = int(env.get("WEB_WORKERS") or 2 * cores + 1)
    concurrency = int(env.get("CELERY_CONCURRENCY") or cores)
    # The billing sweep in as many shards as the worker runs tasks at once: shards bill at once.
    shards = int(env.get("BILLING_SWEEP_SHARDS") or concurrency)
    env["BILLING_SWEEP_SHARDS"] = str(shards)
    proxies = tls_proxies(env)
    env["TRUSTED_PROXIES"] = trusted_proxies(env, proxies)
    # A port someone listens on already (an earlier stack's nginx, say) would have its answers taken
    # for this stack's, and a second beat bill beside the first.
    if taken := port_taken(port):
        sys.exit(f"prod: {taken}; stop it or set PORT to another port; nothing was started.")
    settings = app_settings(env)
    if not settings["DEBUG"] and not settings["ALLOWED_HOSTS"]:
        sys.exit(
            "prod: ALLOWED_HOSTS is empty and DEBUG is off: every request would be refused (400, Invalid "
            "HTTP_HOST). Set it to the host names clients use (on this machine: "
            "ALLOWED_HOSTS=localhost,127.0.0.1); nothing was started."
        )
    run_dir = ROOT / "var" / "prod" / str(port)
    run_dir.mkdir(parents=True, exist_ok=True)
    nginx = nginx_binary()

    start_logging(settings)
    json_lines = settings["LOG_JSON"]

    if not options.no_collectstatic:
        manage("collectstatic", "--noinput", "-v", "0", env=env, json_lines=json_lines)
    manage("migrate", "--noinput", env=env, json_lines=json_lines)
    # What the settings refuse stops the start here (errors); warnings are printed for the operator and
    # not refused: the README's own trial runs with two by choice (chipi.W001, the sandbox; security.W008,
    # plain http). The one warning no deployment answers a request with, security.W020 (no
    # ALLOWED_HOSTS), is refused above.
    manage("check", "--deploy", "--fail-level", "ERROR", env=env, json_lines=json_lines)

    web_listener, ws_listener = upstream_listener(), upstream_listener()
    web_port, ws_port = web_listener.getsockname()[1], ws_listener.getsockname()[1]
    web, ws = f"127.0.0.1:{web_port}", f"127.0.0.1:{ws_port}"
    config = render_nginx(run_dir, port=port, web=web, ws=ws, settings=settings, tls=proxies)

    def pool(kind: str) -> dict[str, str]:
        return {**env, "DATABASE_POOL_MAX_SIZE": env.get("DATABASE_POOL_MAX_SIZE") or str(POOL_SIZES[kind])}

    processes = [
        Process("nginx", [nginx, "-p", str(run_dir), "-c", str(config), "-e", "stderr"], env),
        Process(
            "web",
            [
                *(PYTHON, "-m", "gunicorn", "paygo.wsgi:application", "--workers", str(web_workers)),
                *("--config", "python:paygo.gunicorn"),  # its log in the settings' format (logconfig_dict)
                *("--bind", f"fd://{web_listener.fileno()}"),
                # gunicorn's own refusals in the API's format; a body the app answered without reading
                # is read before the connection closes (else nginx, still writing it, answered 502).
                *("--worker-class", "paygo.gunicorn.SyncWorker"),
                *("--graceful-timeout", "10", "--timeout", str(WEB_TIMEOUT_SECONDS), "--no-control-socket"),
                *("--forwarded-allow-ips", ""),  # no forwarded header is gunicorn's to believe: PayGo decides
                # What nginx lets through (8 KiB lines, headers up to its buffers), gunicorn takes:
                # under its stricter defaults it refused a 4-8 KiB request line, or a hundred
                # headers, with its own HTML page.
                *("--limit-request-line", "8190", "--limit-request-field_size", "8190"),
                *("--limit-request-fields", "1000"),
            ],
            pool("web"),
        ),
        Process(
            "ws",
            [PYTHON, "-m", "paygo.server", "--fd", str(ws_listener.fileno()), "paygo.asgi:application"],
            pool("ws"),
        ),
        Process(
            "worker",
            [*CELERY, "worker", "--concurrency", str(concurrency)],
            pool("worker"),
        ),
        Process(
            "beat",
            [*CELERY, "beat", "-s", str(run_dir / "celerybeat-schedule")],
            pool("beat"),
        ),
    ]
    sizes = {p.name: int(p.env["DATABASE_POOL_MAX_SIZE"]) for p in processes[1:]}
    total = sizes["web"] * web_workers + sizes["ws"] + sizes["worker"] * (concurrency + 1) + sizes["beat"]

    received: list[int] = []

    def on_signal(signum, frame) -> None:
        received.append(signum)

    def stopping() -> bool:
        return bool(received)

    for signum in STOP_SIGNALS:
        # Under nohup a hangup is ignored by the operator's choice: the stack outlives the terminal.
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, on_signal)
    nginx_server = processes[0]
    status = 0
    try:  # whatever happens from here on, every process started is stopped (the proxy first)
        # The proxy starts last, once the servers answer, and is stopped first.
        handed = {"web": web_listener, "ws": ws_listener}
        for process in processes[1:]:
            listener = handed.get(process.name)
            process.popen = spawn(process.args, process.env, pass_fds=[listener.fileno()] if listener else [])
        for listener in handed.values():
            listener.close()  # the servers' now: one that exits leaves nothing listening
        try:
            wait_for_answer(web_port, processes[1:], stopping=stopping)
            wait_for_answer(ws_port, processes[1:], stopping=stopping)
            if json_lines:  # nginx's error log as records (pass_on_nginx), until nginx closes its stderr
                nginx_server.popen = spawn(nginx_server.args, nginx_server.env, stderr=subprocess.PIPE)
                threading.Thread(target=pass_on_nginx, args=(nginx_server.popen.stderr,), daemon=True).start()
            else:
                nginx_server.popen = spawn(nginx_server.args, nginx_server.env)
            wait_for_port(port, nginx_server, processes, stopping=stopping)
        except StopRequested:
            return 0
        except RuntimeError as error:
            log.error("%s; stopping.", error)
            return 1
        log.info(
            f"serving on http://127.0.0.1:{port} (nginx -> web {web} with {web_workers} workers, ws {ws}); "
            f"celery worker x{concurrency} and beat, the billing sweep in {shards} "
            f"shard{'s' if shards != 1 else ''}; database pools' total {total} connections "
            f"(web {sizes['web']} x {web_workers}, ws {sizes['ws']}, worker {sizes['worker']} x {concurrency + 1}, "
            f"beat {sizes['beat']}). Ctrl-C stops everything."
        )
        while not received:
            exited = next((p for p in processes if p.popen.poll() is not None), None)
            if exited:
                log.error("%s exited with %s; stopping the others.", exited.name, exited.popen.returncode)
                status = 1
                break
            time.sleep(0.2)
    finally:
        stop(processes)
        log.info("stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())
