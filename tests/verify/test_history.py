"""The result history (SQLite and a real PostgreSQL): keyed hashes only, retention enforced, HL7 deltas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labinterp.app import create_app
from labinterp.history import History, HistoryConfigError, Recorded
from tests.support.postgres import postgres
from tests.verify.helpers import ca, k
from tests.verify.test_hl7 import message

KEY = b"test-history-key-not-a-secret"
HL7 = "application/hl7-v2"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def postgres_url():
    with postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite3")
    url = request.getfixturevalue("postgres_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS labinterp_result_history")
    return url


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 8, tzinfo=UTC)


def test_only_a_keyed_hash_of_the_patient_is_stored(store_url):
    history = History(store_url, KEY)
    history.record("MRN-12345", [Recorded("potassium", 4.0, None, at(1))])
    assert [p.value for p in history.previous("MRN-12345")] == [4.0]
    assert history.previous("MRN-99999") == ()
    assert History(store_url, b"another-key").previous("MRN-12345") == ()  # the hash is keyed
    raw = _dump(store_url)
    assert "MRN-12345" not in raw and "12345" not in raw
    assert history.patient_hash("MRN-12345") in raw


def test_retention_is_enforced(store_url):
    clock = Clock()
    history = History(store_url, KEY, retention_days=7, clock=clock)
    history.record("P1", [Recorded("calcium", 2.4, None, at(1))])
    clock.now += 6.9 * 86400
    assert len(history.previous("P1")) == 1
    clock.now += 0.2 * 86400  # past 7 days: never read again ...
    assert history.previous("P1") == ()
    assert history.count() == 1
    history.record("P2", [Recorded("calcium", 2.3, None, at(8))])  # ... and deleted on the next write
    assert history.count() == 1
    clock.now += 8 * 86400
    assert history.expire() == 1 and history.count() == 0


def test_a_url_without_a_key_is_refused(tmp_path):
    with pytest.raises(HistoryConfigError):
        History(str(tmp_path / "h.sqlite3"), b"")
    with pytest.raises(HistoryConfigError):
        History(str(tmp_path / "h.sqlite3"), KEY, retention_days=0)


def test_hl7_feeds_get_deltas_from_the_history(store_url):
    app = create_app({"TESTING": True, "HISTORY_URL": store_url, "HISTORY_KEY": KEY.decode()})
    client = app.test_client()
    first = client.post("/v1/hl7/verify", data=message([ca(2.4), k(4.0)], "202603010800"), content_type=HL7)
    assert [o["verification"]["disposition"] for o in first.get_json()["observations"]] == ["release", "release"]
    second = client.post("/v1/hl7/verify", data=message([ca(1.7)], "202603020800"), content_type=HL7)
    (obx,) = second.get_json()["observations"]
    assert obx["verification"]["disposition"] == "hold"
    assert obx["verification"]["reasons"][-1]["code"] == "iv_fluid_contamination"
    assert obx["verification"]["reasons"][-1]["previous"] == 2.4
    # without the history the same message is released: nothing to compare with
    plain = create_app({"TESTING": True}).test_client()
    alone = plain.post("/v1/hl7/verify", data=message([ca(1.7)], "202603020800"), content_type=HL7)
    assert alone.get_json()["observations"][0]["verification"]["disposition"] == "release"


def _dump(url: str) -> str:
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as db:
            return repr(db.execute("SELECT * FROM labinterp_result_history").fetchall())
    import sqlite3

    db = sqlite3.connect(url)
    try:
        return repr(db.execute("SELECT * FROM labinterp_result_history").fetchall())
    finally:
        db.close()


def test_hl7_collection_times_are_instants_with_their_offsets(store_url):
    """OBR-7 with an offset is that instant: 10:00+0200 is before 09:00+0000, so a potassium collected then and
    arriving later is not compared with the 09:00 one (an older result arriving late); written without its
    offset it would read 10:00, after it, and be held as a jump from 4.0 (intravenous fluid)."""
    app = create_app({"TESTING": True, "HISTORY_URL": store_url, "HISTORY_KEY": KEY.decode()})
    client = app.test_client()
    first = client.post("/v1/hl7/verify", data=message([k(4.0)], "202603020900+0000"), content_type=HL7)
    assert first.get_json()["observations"][0]["verification"]["disposition"] == "release"
    late = client.post("/v1/hl7/verify", data=message([k(7.5)], "202603021000+0200"), content_type=HL7)
    reasons = late.get_json()["observations"][0]["verification"]["reasons"]
    assert "iv_fluid_contamination" not in [r["code"] for r in reasons], reasons
    after = client.post("/v1/hl7/verify", data=message([k(7.5)], "202603021000-0100"), content_type=HL7)
    (obx,) = after.get_json()["observations"]
    iv = next(r for r in obx["verification"]["reasons"] if r["code"] == "iv_fluid_contamination")
    assert iv["previous"] == 4.0 and iv["previous_at"] == "2026-03-02T09:00:00+00:00"
