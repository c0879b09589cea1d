"""Every door gives the recorded answer to every case of the corpus (python -m tests.corpus.cases records)."""

from __future__ import annotations

import difflib

from tests.corpus.cases import EXPECTED, answers, app_and_knowledge, recorded


def test_every_door_gives_the_recorded_answers() -> None:
    expected = recorded(EXPECTED / "answers.jsonl.gz")
    app, knowledge = app_and_knowledge()
    seen, differences = set(), []
    for door, case, status, body in answers(app.test_client(), knowledge):
        seen.add((door, case))
        want = expected.get((door, case))
        got = (status, body.decode("utf-8", "replace"))
        if want != got:
            differences.append((door, case, want, got))
    assert seen == set(expected), "the corpus's cases changed: record it again and justify the change"
    if differences:
        door, case, want, got = differences[0]
        diff = "\n".join(difflib.unified_diff(str(want).split(", "), str(got).split(", "), lineterm="", n=1))
        raise AssertionError(f"{len(differences)} answers differ, e.g. {door} {case}:\n{diff[:4000]}")
