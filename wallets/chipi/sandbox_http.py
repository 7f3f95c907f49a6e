"""SandboxHttpAdapter: a requests transport that serves Chipi's REST paths from a ChipiSandbox.

Mounted on a ChipiHttpClient's session it is the one fake HTTP boundary of the tests: the client runs
for real (headers, JSON, retries, error mapping) and the sandbox answers as Chipi would, its faults
turned into what the wire would show (a timeout is a read timeout, a rejection Chipi's error body).
HTTP-level faults -- a 429 with Retry-After, a 500, a dropped connection -- can be scripted per path.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from wallets.chipi.client import ChipiHttpClient, Paths, transaction_to_wire
from wallets.chipi.errors import ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable
from wallets.chipi.sandbox import ChipiSandbox


class _BadRequest(Exception):
    def __init__(self, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class _Scripted:
    method: str
    path: str
    status: int | None
    exc: BaseException | None
    headers: dict[str, str]
    body: Any
    after_acting: bool


class SandboxHttpAdapter(BaseAdapter):
    """Chipi's REST API, served from `sandbox`, for the requests under `base_url` with the right keys."""

    def __init__(self, sandbox: ChipiSandbox, *, base_url: str, api_key: str, secret_key: str):
        super().__init__()
        self.sandbox = sandbox
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.secret_key = secret_key
        self.received: list[requests.PreparedRequest] = []  # every request, in order
        self.timeouts: list[Any] = []  # the timeout each one was sent with
        self._base_path = urlsplit(self.base_url).path
        self._script: deque[_Scripted] = deque()

    def mount_on(self, client: ChipiHttpClient) -> SandboxHttpAdapter:
        client.session.mount(self.base_url + "/", self)
        return self

    def script(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        exc: BaseException | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
        after_acting: bool = False,
    ) -> None:
        """Script the answer to the next `times` requests of `method` to a path starting with `path`:
        `status` (with Chipi's error body unless `body` is given) or raising `exc`. With after_acting=True
        the sandbox serves the request first, so it acts and only its answer is replaced."""
        if (status is None) == (exc is None):
            raise ValueError("Give exactly one of status and exc.")
        for _ in range(times):
            self._script.append(_Scripted(method.upper(), path, status, exc, dict(headers or {}), body, after_acting))

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.received.append(request)
        self.timeouts.append(timeout)
        split = urlsplit(request.url)
        path = unquote(split.path)[len(self._base_path) :]
        scripted = self._take_scripted(request.method, path)
        if scripted is not None and not scripted.after_acting:
            return self._scripted_answer(scripted, request)
        if request.headers.get("x-api-key") != self.api_key or (
            request.headers.get("Authorization") != f"Bearer {self.secret_key}"
        ):
            answer = self._error(request, 401, "Invalid API key or secret key.", "unauthorized")
        else:
            answer = self._serve(request, path, parse_qs(split.query))
        return answer if scripted is None else self._scripted_answer(scripted, request)

    def close(self) -> None:
        pass

    # --- Serving -----------------------------------------------------------------------------------

    def _serve(self, request: requests.PreparedRequest, path: str, query: dict[str, list[str]]) -> requests.Response:
        try:
            status, payload = self._route(request.method, path, query, request.body)
        except ChipiTimeout as exc:
            # The wire shows a timeout the same whether the sandbox acted or not.
            raise requests.ReadTimeout(f"Read timed out ({exc.message})", request=request) from exc
        except ChipiRateLimited as exc:
            retry_after = {"Retry-After": f"{exc.retry_after:g}"}
            return self._error(request, 429, exc.message, exc.code, headers=retry_after)
        except ChipiUnavailable as exc:
            return self._error(request, exc.status or 503, exc.message, exc.code)
        except ChipiRejected as exc:
            return self._error(request, exc.status or 400, exc.message, exc.code)
        except _BadRequest as exc:
            return self._error(request, 400, exc.message, exc.code)
        return self._response(request, status, payload)

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw_body: Any) -> tuple[int, Any]:
        sandbox = self.sandbox
        if (method, path) == ("POST", Paths.WALLETS):
            body = _json_body(raw_body)
            external_user_id = _field(body, "externalUserId")
            address = sandbox.create_wallet(external_user_id=external_user_id)
            return 201, {"address": address, "externalUserId": external_user_id}
        if (method, path) == ("POST", Paths.TRANSFERS):
            body = _json_body(raw_body)
            amount = _field(body, "amount")
            if not amount.isdigit():
                raise _BadRequest("amount must be a string of raw integer units.", "invalid_amount")
            tx = sandbox.send_transfer(
                reference=_field(body, "reference"),
                token=_field(body, "token"),
                amount=int(amount),
                to_address=_field(body, "toAddress"),
            )
            return 201, transaction_to_wire(tx)
        transaction_prefix = Paths.TRANSACTION.split("{", 1)[0]
        if method == "GET" and path.startswith(transaction_prefix):
            tx = sandbox.get_transaction(path[len(transaction_prefix) :])
            if tx is None:
                return 404, _error_body(404, "No transaction with this hash.", "transaction_not_found")
            return 200, transaction_to_wire(tx)
        if (method, path) == ("GET", Paths.TRANSACTIONS):
            tx = sandbox.find_transfer(_param(query, "reference"))
            return 200, {"transactions": [transaction_to_wire(tx)] if tx else []}
        if (method, path) == ("GET", Paths.CUSTODY_BALANCE):
            token = _param(query, "token")
            return 200, {"token": token, "balance": str(sandbox.custody_balance(token))}
        if (method, path) == ("GET", Paths.RATES):
            from_token, to_token = _param(query, "from"), _param(query, "to")
            return 200, {"from": from_token, "to": to_token, "rate": str(sandbox.get_rate(from_token, to_token))}
        return 404, _error_body(404, f"No route {method} {path}.", "route_not_found")

    # --- Scripted faults and answers ---------------------------------------------------------------

    def _take_scripted(self, method: str, path: str) -> _Scripted | None:
        for scripted in self._script:
            if scripted.method == method and path.startswith(scripted.path):
                self._script.remove(scripted)
                return scripted
        return None

    def _scripted_answer(self, scripted: _Scripted, request: requests.PreparedRequest) -> requests.Response:
        if scripted.exc is not None:
            raise scripted.exc
        assert scripted.status is not None
        if scripted.body is not None:
            return self._response(request, scripted.status, scripted.body, headers=scripted.headers)
        message = f"Scripted HTTP {scripted.status}."
        return self._error(request, scripted.status, message, f"http_{scripted.status}", headers=scripted.headers)

    def _error(
        self, request: requests.PreparedRequest, status: int, message: str, code: str, headers: dict | None = None
    ) -> requests.Response:
        return self._response(request, status, _error_body(status, message, code), headers=headers)

    @staticmethod
    def _response(
        request: requests.PreparedRequest, status: int, payload: Any, headers: dict | None = None
    ) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.reason = HTTPStatus(status).phrase
        response._content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json", **(headers or {})})
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response


def _error_body(status: int, message: str, code: str) -> dict[str, str]:
    """Chipi's error shape."""
    return {"error": HTTPStatus(status).phrase, "message": message, "code": code}


def _json_body(raw_body: Any) -> dict[str, Any]:
    try:
        body = json.loads(raw_body or b"")
    except ValueError:
        raise _BadRequest("The body must be JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise _BadRequest("The body must be a JSON object.", "invalid_json")
    return body


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise _BadRequest(f"{name} must be a string.")
    return value


def _param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values:
        raise _BadRequest(f"The query parameter {name} is required.")
    return values[0]
