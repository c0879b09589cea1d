"""Domain errors: plain classes; only a door decides what HTTP status they become."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One bad input field: a JSON-pointer-like path and the reason, in words."""

    path: tuple[str | int, ...]
    reason: str
    code: str = "invalid"

    @property
    def pointer(self) -> str:
        return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in self.path)


class InvalidInput(Exception):
    """The input cannot be interpreted; `errors` names every bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.pointer or '/'}: {e.reason}" for e in errors))


class DataError(Exception):
    """Reference data failed validation: names the file, the entry and the problem."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"{file}: {entry}: {problem}" for file, entry, problem in problems]
        super().__init__("reference data is invalid:\n  " + "\n  ".join(lines))
