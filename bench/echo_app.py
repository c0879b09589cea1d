"""Baseline for the benchmark: a bare Flask JSON echo, served with the same gunicorn settings."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/echo")
def echo():  # type: ignore[no-untyped-def]
    return request.get_json()


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return {"status": "ok"}
