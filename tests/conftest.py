"""Fixtures by layer: the engine with no Flask, the app and its test client."""

from __future__ import annotations

import pytest

from labinterp.core import Engine, Knowledge, load_knowledge


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture(scope="session")
def engine(knowledge: Knowledge) -> Engine:
    return Engine(knowledge)


@pytest.fixture(scope="session")
def app():  # type: ignore[no-untyped-def]
    from labinterp.app import create_app

    return create_app({"TESTING": True})


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()
