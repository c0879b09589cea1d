"""Two instances behind one nginx on 127.0.0.1: identical answers, and one instance killed mid-load."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from tests.ops.helpers import PANEL, kill_instance, nginx, post_json, wait_refused
from tests.support.server import gunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

THREADS = 4
REQUESTS_PER_THREAD = 150
KILL_AFTER = 150  # completed requests before instance A is killed


def _interpretations(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('labinterp_http_requests_total{method="POST",route="/v1/interpret"'))


def test_two_instances_answer_alike_and_survive_losing_one(tmp_path: Path):
    body = json.dumps(PANEL)
    with gunicorn(workers=1, threads=2) as (base_a, process_a), gunicorn(workers=1, threads=2) as (base_b, _), \
            nginx(tmp_path / "nginx", (base_a[7:], base_b[7:])) as proxy:
        # Identical answers, directly from each instance and through the proxy.
        direct_a = post_json(base_a, "/v1/interpret", PANEL)
        direct_b = post_json(base_b, "/v1/interpret", PANEL)
        assert direct_a[0] == direct_b[0] == 200 and direct_a[2] == direct_b[2]
        for _ in range(8):
            status, headers, answer = post_json(proxy, "/v1/interpret", PANEL)
            assert status == 200 and answer == direct_a[2]
        assert _interpretations(base_a) >= 2 and _interpretations(base_b) >= 2  # both served
        assert post_json(proxy, "/v1/interpret", PANEL, {"X-Request-ID": "through-proxy"})[1][
            "X-Request-ID"] == "through-proxy"

        # Load through the proxy; kill instance A (master and workers, SIGKILL) part-way.
        records: list[tuple[float, float, int]] = []  # (start, end, status or 0 for no answer)
        lock = threading.Lock()
        killed_at: list[float] = []

        def loop() -> None:
            with requests.Session() as session:
                for _ in range(REQUESTS_PER_THREAD):
                    start = time.monotonic()
                    try:
                        status = session.post(proxy + "/v1/interpret", data=body, timeout=15,
                                              headers={"Content-Type": "application/json"}).status_code
                    except requests.RequestException:
                        status = 0
                    with lock:
                        records.append((start, time.monotonic(), status))

        workers = [threading.Thread(target=loop) for _ in range(THREADS)]
        for worker in workers:
            worker.start()
        while True:
            with lock:
                if len(records) >= KILL_AFTER:
                    break
            time.sleep(0.01)
        kill_started = time.monotonic()
        kill_instance(process_a)
        wait_refused(int(base_a.rsplit(":", 1)[1]))
        killed_at.append(time.monotonic())
        for worker in workers:
            worker.join(timeout=120)

    assert len(records) == THREADS * REQUESTS_PER_THREAD
    before = [r for r in records if r[1] < kill_started]
    in_flight = [r for r in records if r[0] <= killed_at[0] and r[1] >= kill_started]
    after = [r for r in records if r[0] > killed_at[0]]
    failed_in_flight = [r for r in in_flight if r[2] != 200]
    print(f"\ntwo instances: {len(before)} before the kill, {len(in_flight)} in flight "
          f"({len(failed_in_flight)} failed), {len(after)} after; statuses after: "
          f"{sorted({r[2] for r in after})}")
    assert all(r[2] == 200 for r in before)
    assert len(after) >= 100  # the kill happened mid-load, with plenty of requests after it
    assert all(r[2] == 200 for r in after), [r[2] for r in after if r[2] != 200]
    assert len(failed_in_flight) <= THREADS  # at most one request per client can be caught by the kill
    # The kill was real: instance A no longer answers.
    with pytest.raises(OSError):
        post_json(base_a, "/v1/interpret", PANEL, timeout=2)


def test_metrics_are_not_served_through_the_proxy(tmp_path: Path):
    with gunicorn(workers=1, threads=2) as (base_a, _), gunicorn(workers=1, threads=2) as (base_b, _), \
            nginx(tmp_path / "nginx", (base_a[7:], base_b[7:])) as proxy:
        assert urllib.request.urlopen(base_a + "/metrics", timeout=5).status == 200  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(proxy + "/metrics", timeout=5)  # noqa: S310 - loopback
        assert refused.value.code == 404
