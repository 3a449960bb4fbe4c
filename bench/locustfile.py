"""Locust users of the load benchmark (bench/load.py starts them): API reads at a fixed rate, bulk ingestion.

Settings come from the environment that bench/load.py sets: LOAD_TOKEN (the bench admin's API token),
LOAD_PARTNERS (a file of partner external ids, one a line), LOAD_READ_RATE (requests per second per
reading user) and LOAD_BATCH (events per ingestion body).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid

from locust import HttpUser, constant, constant_throughput, task

TOKEN = os.environ.get("LOAD_TOKEN", "")
PARTNERS = (
    [line.strip() for line in open(os.environ["LOAD_PARTNERS"]) if line.strip()]
    if "LOAD_PARTNERS" in os.environ
    else []
)
READ_RATE = float(os.environ.get("LOAD_READ_RATE", "5"))
BATCH = int(os.environ.get("LOAD_BATCH", "1000"))
SOURCE = "bench-load"  # bench/load.py deletes these events afterwards
KINDS = ["portal_login", "content_view", "email_opened", "training_completed", "meeting_held"]


class ApiReader(HttpUser):
    """An integration reading partners: the partner list (a page of 50) and one partner's health."""

    wait_time = constant_throughput(READ_RATE)

    def on_start(self):
        self.client.headers["Authorization"] = f"Token {TOKEN}"
        self.random = random.Random()

    @task(1)
    def partner_list(self):
        page = self.random.randint(1, 20)
        self.client.get(f"/api/v1/partners/?page={page}", name="/api/v1/partners/")

    @task(1)
    def partner_health(self):
        external_id = self.random.choice(PARTNERS)
        self.client.get(f"/api/v1/partners/{external_id}/health/", name="/api/v1/partners/{id}/health/")


class Ingester(HttpUser):
    """A CRM or portal sync posting lists of BATCH new events, one body after the other."""

    wait_time = constant(0)

    def on_start(self):
        self.client.headers["Authorization"] = f"Token {TOKEN}"
        self.client.headers["Content-Type"] = "application/json"
        self.prefix = uuid.uuid4().hex[:12]
        self.bodies = itertools.count()
        self.random = random.Random(self.prefix)

    @task
    def ingest(self):
        body = self.prefix + "-" + str(next(self.bodies))
        events = [
            {
                "partner": self.random.choice(PARTNERS),
                "kind": KINDS[n % len(KINDS)],
                "occurred_at": "2026-11-30T12:00:00Z",
                "quantity": 1,
                "source": SOURCE,
                "external_id": f"{body}-{n}",
            }
            for n in range(BATCH)
        ]
        with self.client.post(
            "/api/v1/activities/",
            data=json.dumps(events),
            name="/api/v1/activities/ (1,000 events)",
            catch_response=True,
        ) as response:
            if response.status_code != 201 or response.json().get("created") != BATCH:
                response.failure(f"{response.status_code}: {response.text[:200]}")
