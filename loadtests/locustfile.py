"""Locust users for Tessera: submit, poll, download; mixed models, sizes and tenants.

    pip install locust
    TESSERA_API_KEY=keyA,keyB locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \
        --headless -u 20 -r 2 -t 2m

TESSERA_FAMILIES (default "flux,sdxl") picks the tiny families spread over; TESSERA_SIZES the
sizes; TESSERA_WAIT the seconds a user waits between submissions (the rate knob).
"""

from __future__ import annotations

import itertools
import os
import random
import time

from locust import HttpUser, between, task

KEYS = [k for k in os.environ.get("TESSERA_API_KEY", "").split(",") if k]
FAMILIES = os.environ.get("TESSERA_FAMILIES", "flux,sdxl").split(",")
SIZES = os.environ.get("TESSERA_SIZES", "64x64,128x128,256x256").split(",")
WAIT = float(os.environ.get("TESSERA_WAIT", "1.0"))
_next_key = itertools.cycle(KEYS or ["missing-key"])


class TesseraUser(HttpUser):
    wait_time = between(WAIT / 2, WAIT * 1.5)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {next(_next_key)}"}
        self.models = {}
        for family in FAMILIES:
            v = self.client.post("/v1/my-models/validate-hf", headers=self.headers,
                                 json={"hf_model_id": f"tessera/tiny-{family}"}).json()
            m = self.client.post("/v1/my-models/import-hf", headers=self.headers,
                                 json={"validation_id": v["validation_id"]}).json()
            self.models[family] = m["id"]

    @task
    def generate_poll_download(self):
        body = {"model": self.models[random.choice(FAMILIES)], "prompt": "a lighthouse",
                "size": random.choice(SIZES), "n": random.choice((1, 1, 2))}
        r = self.client.post("/v1/images/generations", headers=self.headers, json=body,
                             name="submit")
        if r.status_code != 202:
            return
        task_id, deadline = r.json()["task_id"], time.time() + 300
        while time.time() < deadline:
            t = self.client.get(f"/v1/tasks/{task_id}", headers=self.headers,
                                name="poll").json()
            if t["status"] in ("completed", "failed"):
                break
            time.sleep(0.5)
        if t.get("status") == "completed":
            for item in t["result"]["data"]:
                self.client.get(item["url"], name="download")
