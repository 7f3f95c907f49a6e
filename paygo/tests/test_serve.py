"""`manage.py serve`: where it listens comes from its command line alone, and a development server
(DEBUG on) that other machines can reach says so."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from paygo import server


@pytest.fixture
def binds(monkeypatch, settings):
    """What `serve` would hand Daphne: its --bind and --port (nothing is served)."""
    calls = []
    monkeypatch.setattr(server.CommandLineInterface, "run", lambda self, args: calls.append(args))
    settings.EMBEDDED = False  # no timer thread
    return calls


def serve(*args: str) -> str:
    """`manage.py serve *args`; what it wrote to stderr."""
    err = io.StringIO()
    call_command("serve", *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def test_host_and_port_in_the_environment_are_not_where_it_listens(binds, monkeypatch):
    """HOST is exported by many tools and shells: HOST=0.0.0.0 put `make run` (DEBUG on, the demo
    accounts' published password) on every interface."""
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9999")

    serve()

    assert binds == [["--bind", "127.0.0.1", "--port", "8000", "paygo.asgi:application"]]


def test_another_address_is_chosen_on_the_command_line(binds, settings):
    settings.DEBUG = False

    warned = serve("--host", "0.0.0.0", "--port", "9000")

    assert binds == [["--bind", "0.0.0.0", "--port", "9000", "paygo.asgi:application"]]
    assert warned == ""  # production settings: nothing to warn of


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "paygo.example.com"])
def test_a_development_server_other_machines_reach_is_warned_of(binds, settings, host):
    settings.DEBUG = True

    warned = serve("--host", host)

    assert binds[0][:2] == ["--bind", host]
    assert f"serving on {host} with DEBUG on" in warned
    assert "127.0.0.1" in warned  # what to use instead


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_development_server_on_loopback_is_not_warned_of(binds, settings, host):
    settings.DEBUG = True

    assert serve("--host", host) == ""
    assert binds[0][:2] == ["--bind", host]
