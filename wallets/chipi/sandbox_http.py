"""The sandbox served over HTTP: httpx transports that answer the SDK's requests at its base URL.

The gateway mounts them on the official SDK's httpx clients in sandbox mode, so every request runs
the SDK for real (its URLs, version parameter, headers, JSON bodies, response models, error
handling) and the sandbox answers as Chipi would. Injected faults become what the wire shows: a
timeout is httpx's ReadTimeout (before acting), a lost response acts and then times out, an error
is a 503, a rate limit a 429 with Retry-After, a rejection a 400 with Chipi's error body, a
stale transaction-list an empty page, an unreachable Chipi httpx's ConnectError (nothing sent), and a
pending execution an ordinary answer whose record stays PENDING (the sandbox acts that one out).
"""

from __future__ import annotations

import json
from collections import deque
from urllib.parse import urlsplit

import httpx

from wallets.chipi.sandbox import FAULT_RETRY_AFTER, PATHS, ChipiSandbox, SandboxAnswer, SandboxRequest

SANDBOX_BASE_URL = "https://sandbox.chipi.invalid/v1"
# The requests a transport keeps, newest last, for tests to read: a sandbox deployment's process
# serves for weeks, and kept them all (each with the API key in its headers).
KEPT_REQUESTS = 200


class _Serving:
    def __init__(self, sandbox: ChipiSandbox, base_url: str = SANDBOX_BASE_URL):
        self.sandbox = sandbox
        parts = urlsplit(base_url)
        self.host = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.received: deque[httpx.Request] = deque(maxlen=KEPT_REQUESTS)  # the latest, in order

    def serve(self, request: httpx.Request, content: bytes) -> httpx.Response:
        self.received.append(request)
        path = request.url.path
        if request.url.host != self.host or not path.startswith(self.base_path + "/"):
            return _response(request, SandboxAnswer(404, {"message": "Unknown host or path", "code": "NOT_FOUND"}))
        path = path[len(self.base_path) :]
        operation = self.sandbox.operation_of(request.method, path)
        fault = self.sandbox.take_fault(operation) if operation else None
        if fault == "timeout":
            raise httpx.ReadTimeout("Sandbox: timed out (injected).", request=request)
        if fault == "unreachable":
            raise httpx.ConnectError("Sandbox: could not connect (injected).", request=request)
        if fault == "error":
            return _response(request, SandboxAnswer(503, {"message": "Service unavailable", "code": "UNAVAILABLE"}))
        if fault == "rate_limited":
            answer = SandboxAnswer(429, {"message": "Too many requests", "code": "RATE_LIMITED"})
            answer.headers["Retry-After"] = str(int(FAULT_RETRY_AFTER))
            return _response(request, answer)
        if fault == "reject":
            return _response(request, SandboxAnswer(400, {"message": "Rejected (injected)", "code": "BAD_REQUEST"}))
        try:
            body = json.loads(content) if content else None
        except ValueError:
            return _response(request, SandboxAnswer(400, {"message": "Invalid JSON", "code": "VALIDATION_ERROR"}))
        answer = self.sandbox.handle(
            SandboxRequest(
                method=request.method,
                path=path,
                query=dict(request.url.params),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=body,
                fault=fault,
            )
        )
        if fault == "stale" and request.method == "GET":
            empty = {"data": [], "total": 0, "page": 1, "limit": 10, "total_pages": 0}
            if path == PATHS["transaction_list"][1]:
                return _response(request, SandboxAnswer(200, empty))
        if fault == "lost_response":
            raise httpx.ReadTimeout("Sandbox: acted, then the response was lost (injected).", request=request)
        return _response(request, answer)


def _response(request: httpx.Request, answer: SandboxAnswer) -> httpx.Response:
    return httpx.Response(
        answer.status,
        headers={"Content-Type": "application/json", **answer.headers},
        content=json.dumps(answer.payload).encode(),
        request=request,
    )


class SandboxTransport(httpx.BaseTransport):
    """Chipi's API at SANDBOX_BASE_URL, served from `sandbox` (the gateway mounts it on the SDK's
    clients, the async one through the same blocking bridge as a live transport)."""

    def __init__(self, sandbox: ChipiSandbox, base_url: str = SANDBOX_BASE_URL):
        self.serving = _Serving(sandbox, base_url)

    @property
    def received(self) -> deque[httpx.Request]:
        return self.serving.received

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.serving.serve(request, request.read())
