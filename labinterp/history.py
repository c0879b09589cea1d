"""The optional result history for feeds that cannot send previous results (HL7): SQLite or PostgreSQL.

It keeps only what the delta and contamination rules need: a keyed hash (HMAC-SHA256) of the
patient identifier, never the identifier itself; the analyte; the canonical value; the collection
time; and when it was stored. Rows older than the retention (by the time they were stored) are
never read and are deleted on every write. Off unless LABINTERP_HISTORY_URL is set: a file path
(or sqlite:///path) for the embedded SQLite, postgresql://... for PostgreSQL (psycopg 3).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labinterp.core.verification import PreviousResult

DEFAULT_RETENTION_DAYS = 7.0
SCHEMA = ("CREATE TABLE IF NOT EXISTS labinterp_result_history (patient_hash TEXT NOT NULL, "
          "analyte TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, comparator TEXT, "
          "collected_at DOUBLE PRECISION, stored_at DOUBLE PRECISION NOT NULL)")
INDEX = ("CREATE INDEX IF NOT EXISTS labinterp_result_history_patient "
         "ON labinterp_result_history (patient_hash, analyte)")


class HistoryConfigError(ValueError):
    """The history is configured incompletely (a URL without a key, a bad retention)."""


@dataclass(frozen=True)
class Recorded:
    analyte: str
    value: float
    comparator: str | None
    collected_at: datetime | None


class History:
    """One store (SQLite file or PostgreSQL database); safe to share between a worker's threads."""

    def __init__(self, url: str, key: bytes, retention_days: float = DEFAULT_RETENTION_DAYS,
                 clock: Any = time.time):
        if not key:
            raise HistoryConfigError("LABINTERP_HISTORY_KEY is required with LABINTERP_HISTORY_URL: the patient "
                                     "identifier is stored only as a keyed hash")
        if not retention_days > 0:
            raise HistoryConfigError("the history retention must be a positive number of days")
        self.key, self.retention = key, retention_days * 86400.0
        self.clock = clock
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.url = url
        self.path = url.removeprefix("sqlite:///") if not self.postgres else ""
        self._lock = threading.Lock()
        db = self._connect()
        try:
            db.execute(SCHEMA)
            db.execute(INDEX)
            db.commit()
        finally:
            db.close()

    @property
    def kind(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    # ------------------------------------------------------------------ storage
    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=False)
        return sqlite3.connect(self.path, timeout=30)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def patient_hash(self, patient_id: str) -> str:
        return hmac.new(self.key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def previous(self, patient_id: str) -> tuple[PreviousResult, ...]:
        """The patient's stored results within the retention, oldest first."""
        since = self.clock() - self.retention
        db = self._connect()
        try:
            rows = db.execute(self._sql(
                "SELECT analyte, value, comparator, collected_at FROM labinterp_result_history "
                "WHERE patient_hash = ? AND stored_at >= ? ORDER BY collected_at"),
                (self.patient_hash(patient_id), since)).fetchall()
        finally:
            db.close()
        return tuple(PreviousResult(a, float(v), c, None if t is None else datetime.fromtimestamp(t, UTC))
                     for a, v, c, t in rows)

    def record(self, patient_id: str, results: Iterable[Recorded]) -> None:
        """Store released results and delete everything older than the retention."""
        now = self.clock()
        digest = self.patient_hash(patient_id)
        rows = [(digest, r.analyte, r.value, r.comparator,
                 None if r.collected_at is None else r.collected_at.timestamp(), now) for r in results]
        db = self._connect()
        try:
            with self._lock:
                db.execute(self._sql("DELETE FROM labinterp_result_history WHERE stored_at < ?"),
                           (now - self.retention,))
                for row in rows:
                    db.execute(self._sql("INSERT INTO labinterp_result_history VALUES (?, ?, ?, ?, ?, ?)"), row)
                db.commit()
        finally:
            db.close()

    def expire(self) -> int:
        """Delete what is older than the retention now; the number of rows deleted."""
        db = self._connect()
        try:
            cursor = db.execute(self._sql("DELETE FROM labinterp_result_history WHERE stored_at < ?"),
                                (self.clock() - self.retention,))
            db.commit()
            return int(cursor.rowcount or 0)
        finally:
            db.close()

    def count(self) -> int:
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM labinterp_result_history").fetchone()[0])
        finally:
            db.close()


def from_settings(settings: Mapping[str, Any]) -> History | None:
    """The history the deployer configured (None: off), from settings or LABINTERP_HISTORY_* variables."""
    url = settings.get("HISTORY_URL") or os.environ.get("LABINTERP_HISTORY_URL")
    if not url:
        return None
    key = settings.get("HISTORY_KEY") or os.environ.get("LABINTERP_HISTORY_KEY") or ""
    days_text = settings.get("HISTORY_RETENTION_DAYS") or os.environ.get("LABINTERP_HISTORY_RETENTION_DAYS")
    try:
        days = DEFAULT_RETENTION_DAYS if days_text in (None, "") else float(days_text)
    except ValueError:
        raise HistoryConfigError("LABINTERP_HISTORY_RETENTION_DAYS must be a number of days") from None
    return History(str(url), str(key).encode("utf-8"), days)
