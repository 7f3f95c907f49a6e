"""The HTTP mix of the load test (bench/load/run.py starts it): people who sign in, watch their
balance and transactions, browse the marketplace, start, heartbeat and stop sessions, pay each other
and look at their dashboards.

LOAD_PEOPLE names the JSON file run.py wrote: {"password", "people": [{"id", "email"}], "services": [id]}.
Every answer that is not a 2xx counts as a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid

from locust import FastHttpUser, between, task

WORLD = json.loads(open(os.environ["LOAD_PEOPLE"]).read())  # noqa: SIM115 (read once at import)
_next_person = itertools.cycle(WORLD["people"])


class Person(FastHttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.me = next(_next_person)
        reply = self.client.post("/api/v1/auth/login", json={"email": self.me["email"], "password": WORLD["password"]})
        self.headers = {"Authorization": f"Bearer {reply.json()['token']}"}

    def get(self, path: str, name: str | None = None) -> None:
        self.client.get(path, headers=self.headers, name=name or path)

    def send(self, method: str, path: str, body: dict, name: str | None = None, *, money: bool = False):
        headers = {**self.headers, "Idempotency-Key": uuid.uuid4().hex} if money else self.headers
        return self.client.request(method, path, json=body, headers=headers, name=name or path)

    @task(10)
    def balance(self) -> None:
        self.get("/api/v1/wallet/balance")

    @task(5)
    def transactions(self) -> None:
        self.get("/api/v1/wallet/transactions")

    @task(5)
    def marketplace(self) -> None:
        self.get("/api/v1/service")

    @task(1)
    def categories(self) -> None:
        self.get("/api/v1/service/categories")

    @task(2)
    def dashboard(self) -> None:
        self.get("/api/v1/dashboard/user/overview?period=week", name="/api/v1/dashboard/user/overview")

    @task(1)
    def dashboard_sessions(self) -> None:
        self.get("/api/v1/dashboard/user/sessions")

    @task(1)
    def my_sessions(self) -> None:
        self.get("/api/v1/streams/my-sessions")

    @task(2)
    def transfer(self) -> None:
        recipient = random.choice([p for p in WORLD["people"][:50] if p["id"] != self.me["id"]])
        self.send("POST", "/api/v1/wallet/transfer", {"recipientId": recipient["id"], "amount": "0.01"}, money=True)

    @task(2)
    def session(self) -> None:
        """Start a session, heartbeat it twice, stop it."""
        reply = self.send("POST", "/api/v1/streams/start", {"serviceId": random.choice(WORLD["services"])}, money=True)
        if reply.status_code not in (200, 201):
            return
        session_id = reply.json()["session"]["id"]
        for _ in range(2):
            self.send(
                "PATCH", f"/api/v1/streams/{session_id}/metrics", {"latency": 20}, name="/api/v1/streams/[id]/metrics"
            )
        self.send("PATCH", f"/api/v1/streams/{session_id}/stop", {}, name="/api/v1/streams/[id]/stop", money=True)
