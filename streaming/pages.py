"""/live/: a session's cost ticking live in the browser, for its user (or vendor, or staff).

The page is the same for everyone and holds nothing of anyone's: the browser signs in through the
API (POST /api/v1/auth/login), keeps the access token in sessionStorage (this tab only, gone when
it closes, never sent by the browser on its own, so no other site can make use of it), lists the
caller's running sessions and watches one on /ws/streams/<sessionId>/ with the token as a
`bearer.` subprotocol (kept out of URLs and logs). The page runs only its own script
(paygo.views.PAGE_POLICY). Operators watch the same figures on the session's admin page.
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest
from django.template.response import TemplateResponse

from paygo.views import page


@page
def live(request: HttpRequest, session_id: UUID | None = None) -> TemplateResponse:
    return TemplateResponse(request, "streaming/live.html", {"session_id": session_id or ""})
