"""Many panels in one request: each validated on its own, all classified in one call per profile."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from labinterp.core import Engine, InvalidInput, Panel
from labinterp.core.engine import Staged
from labinterp.http.loading import compile_schema
from labinterp.http.problems import field_errors, flatten_messages, problem_body
from labinterp.http.schemas import PanelSchema
from labinterp.render import v1 as render


class BatchPanelSchema(PanelSchema):
    """A /v1/interpret request plus the caller's id for the panel."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=64),
                       metadata={"description": "Caller's identifier for the panel, echoed back."})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> tuple[str, Panel]:  # type: ignore[override]
        panel_id = data.pop("id")
        return panel_id, super()._make(data, **kwargs)


@lru_cache(maxsize=8)
def panel_loader(max_results: int) -> Callable[[Any], tuple[str, Panel]]:
    """The loader compiled from BatchPanelSchema, once per configured limit (marshmallow's answers and errors)."""
    return compile_schema(BatchPanelSchema(max_results=max_results))


def _error(index: int, detail: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    prefix = f"/panels/{index}"
    for e in errors:
        e["pointer"] = prefix + e["pointer"]
    return problem_body(422, detail, "invalid-input", errors)


def interpret_batch(engine: Engine, panels: list[Any], load: Callable[[Any], tuple[str, Panel]]
                    ) -> list[dict[str, Any]]:
    """One answer per panel, in order: {"id", "result"} or {"id", "error"} (a problem detail)."""
    answers: list[dict[str, Any]] = []
    staged: list[tuple[int, Staged]] = []
    for index, raw in enumerate(panels):
        given_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        answers.append({"id": given_id})
        if not isinstance(raw, dict):
            answers[-1]["error"] = _error(index, f"Panel {index} is not an object.", [
                {"pointer": "", "reason": "must be an object: a /v1/interpret request plus 'id'", "code": "invalid"}])
            continue
        try:
            _, panel = load(raw)
        except ValidationError as exc:
            errors = flatten_messages(exc.messages)
            answers[-1]["error"] = _error(index, f"Panel {index} has invalid fields.", errors)
            continue
        try:
            staged.append((index, engine.stage(panel)))
        except InvalidInput as exc:
            answers[-1]["error"] = _error(index, f"Panel {index} has invalid fields.", field_errors(exc.errors))
    outcomes = engine.interpret_many([s for _, s in staged])
    for (index, _), outcome in zip(staged, outcomes, strict=True):
        answers[index]["result"] = render.answer(outcome)
    return answers
