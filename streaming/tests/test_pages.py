"""/live/: the live-cost page is the same for everyone, runs only its own script, and holds nothing
of anyone's (the browser signs in through the API). The browser test drives it for real
(paygo/tests/test_browser.py)."""

from __future__ import annotations

import re
import uuid

import pytest

pytestmark = pytest.mark.django_db


def test_the_live_page_runs_only_its_own_script(anon):
    response = anon.get("/live/")

    assert response.status_code == 200
    page = response.content.decode()
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/streaming/live.js">']
    assert 'id="sign-in"' in page
    assert anon.get("/static/streaming/live.js").status_code == 200


def test_the_page_of_one_session_names_it_and_nothing_else(anon, alice):
    session_id = uuid.uuid4()

    page = anon.get(f"/live/{session_id}/").content.decode()

    assert f'data-session-id="{session_id}"' in page
    assert "alice" not in page.lower()


def test_a_malformed_session_id_is_a_404(anon):
    assert anon.get("/live/not-a-session/").status_code == 404


def test_the_live_page_only_answers_reads(anon):
    assert anon.post("/live/").status_code == 405
