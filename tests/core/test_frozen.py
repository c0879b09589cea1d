"""@frozen builds the same dataclass as @dataclass(frozen=True), with a cheaper constructor."""

from __future__ import annotations

import dataclasses

import pytest

from labinterp.core.frozen import frozen
from labinterp.core.model import Panel, ResultInput
from labinterp.core.outcomes import Note, Verdict


@frozen
class Sample:
    a: int
    b: str = "x"
    c: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    a: int
    b: str = "x"
    c: dict[str, int] = dataclasses.field(default_factory=dict)


def test_same_fields_defaults_equality_and_repr_as_the_dataclass() -> None:
    assert Sample.__init__.__code__.co_filename == "<string>" and not hasattr(Sample(1), "__dict__")
    for args, kwargs in (((1,), {}), ((1, "y"), {}), ((), {"a": 2, "c": {"k": 1}}), ((3,), {"b": "z"})):
        got, expected = Sample(*args, **kwargs), Reference(*args, **kwargs)
        assert dataclasses.asdict(got) == dataclasses.asdict(expected)
        assert repr(got).replace("Sample", "Reference") == repr(expected)
    assert Sample(1) == Sample(1) and Sample(1) != Sample(2) and hash(Note("x", "low")) == hash(Note("x", "low"))
    assert Sample(1).c is not Sample(1).c  # a new default each time, as default_factory says


def test_instances_stay_frozen_and_arguments_are_checked() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Sample(1).a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample(1, "x", {}, 4)  # type: ignore[call-arg]


def test_the_domain_types_use_it() -> None:
    for cls in (Panel, ResultInput, Note, Verdict):
        assert cls.__init__.__code__.co_filename == "<string>", cls
