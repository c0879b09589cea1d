"""Instruction counts (valgrind callgrind) of one POST /v1/interpret and of its parts, in process; and of one
POST /v1/verify (the same panel, collected_at and a previous result per analyte) and its rules.

Each part runs in its own process under callgrind with instrumentation off during start-up; the process
switches it on (callgrind_control) for N calls after a warm-up, so the count is the part's cost per call.
Counts, not seconds: steady on a shared machine. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PANEL = {"results": [{"analyte": "calcium", "value": 8.1, "unit": "mg/dL"},
                     {"analyte": "magnesium", "value": 0.55, "unit": "mmol/L"},
                     {"analyte": "potassium", "value": 5.8, "unit": "mEq/L"}],
         "patient": {"age_years": 54, "sex": "female"}}
VERIFY = {**PANEL, "collected_at": "2026-03-02T08:00:00Z",
          "previous": [{**result, "collected_at": "2026-03-01T08:00:00Z"} for result in PANEL["results"]]}
PARTS = ("echo", "interpret", "logged", "schema", "marshmallow", "engine", "classify", "render", "orjson", "verify",
         "verify_rules")


def run_part(part: str, n: int) -> None:
    """Set up, then do `part` n times (called in the child process under callgrind)."""
    import logging

    if part == "logged":  # the access log on, as under gunicorn, written to /dev/null
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    else:
        logging.disable(logging.CRITICAL)
    sys.path.insert(0, str(ROOT))
    body = json.dumps(PANEL).encode()
    if part == "echo":
        from bench.echo_app import app

        client = app.test_client()
        call = lambda: client.post("/echo", data=body, content_type="application/json")  # noqa: E731
    else:
        import orjson

        from labinterp.api.v1 import PANEL_SCHEMA
        from labinterp.app import create_app
        from labinterp.http.loading import compile_schema
        from labinterp.render import v1 as render

        app = create_app({"TESTING": True})
        client = app.test_client()
        engine = app.extensions["labinterp"].engine
        panel = PANEL_SCHEMA.load(PANEL)
        load = compile_schema(PANEL_SCHEMA)
        staged = engine.stage(panel)
        outcome = engine.interpret(panel)
        answer = render.answer(outcome, packed=True)  # as the door renders it
        verify_body = json.dumps(VERIFY).encode()
        if part == "verify_rules":
            from labinterp.api.verify import EXTENSION, VERIFY_SCHEMA
            from labinterp.core.verification import previous_results, utc, verify

            request = VERIFY_SCHEMA.load(VERIFY)
            rules = app.extensions[EXTENSION][None]
            previous = previous_results(engine, engine.profile(None), request.previous)
            times = tuple(utc(t) for t in request.collected_at)
        call = {
            "verify": lambda: client.post("/v1/verify", data=verify_body, content_type="application/json"),
            "verify_rules": lambda: verify(outcome, times, request.hemolysis_index, previous, rules),
            "interpret": lambda: client.post("/v1/interpret", data=body, content_type="application/json"),
            "logged": lambda: client.post("/v1/interpret", data=body, content_type="application/json"),
            "schema": lambda: load(json.loads(body)),  # the loader the door uses, compiled from the schema
            "marshmallow": lambda: PANEL_SCHEMA.load(json.loads(body)),  # the same schema loaded by marshmallow
            "engine": lambda: engine.interpret(panel),
            "classify": lambda: [engine.classify(staged.knowledge, row) for row in staged.rows],
            "render": lambda: render.answer(outcome, packed=True),
            "orjson": lambda: orjson.dumps(answer),
        }[part]
    for _ in range(20):  # warm caches before counting
        call()
    toggle("on")
    for _ in range(n):
        call()
    toggle("off")


def toggle(state: str) -> None:
    """Instrumentation on or off for this process (callgrind applies it within a few blocks)."""
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)


def instructions(part: str, n: int, tmp: str) -> int:
    out = os.path.join(tmp, f"{part}-{n}.out")
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--child", part, str(n)], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = Path(out).read_text(errors="replace")
    found = re.search(r"^totals:\s+(\d+)", text, re.M)
    assert found, "no totals in callgrind output"
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("parts", nargs="*", default=list(PARTS))
    args = parser.parse_args()
    if args.child:
        run_part(args.child[0], int(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        costs = {}
        for part in args.parts:
            costs[part] = instructions(part, args.calls, tmp) / args.calls
            print(f"{part:10s} {costs[part] / 1e6:6.3f} M instructions per call", flush=True)
    if "echo" in costs and "interpret" in costs:
        print(f"interpret / echo: {costs['interpret'] / costs['echo']:.2f}x the instructions "
              f"(in process, without gunicorn)")
    if "verify" in costs and "interpret" in costs:
        print(f"verify / interpret throughput: {costs['interpret'] / costs['verify']:.2f} (instructions per "
              "request, in process, without gunicorn)")


if __name__ == "__main__":
    main()
