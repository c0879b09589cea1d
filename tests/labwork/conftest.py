"""Fixtures for the laboratory workflow: the example profile, the test files, an app with profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from labinterp.core import Engine, load_knowledge

ROOT = Path(__file__).resolve().parents[2]
FILES = Path(__file__).resolve().parent / "files"
LABS = ROOT / "examples" / "labs"


@pytest.fixture(scope="session")
def lab_engine() -> Engine:
    return Engine(load_knowledge(None, LABS))


@pytest.fixture(scope="session")
def lab_app():  # type: ignore[no-untyped-def]
    from labinterp.app import create_app

    return create_app({"TESTING": True, "LABS_DIR": str(LABS)})


@pytest.fixture()
def lab_client(lab_app):  # type: ignore[no-untyped-def]
    return lab_app.test_client()
