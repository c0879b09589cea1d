"""`@frozen`: a frozen dataclass whose constructor writes its fields straight into the instance dictionary.

A frozen dataclass's generated `__init__` calls `object.__setattr__` once per field: for the engine's
outcomes (up to 24 fields, several per result) that was about two fifths of an interpretation's
instructions. This one stores the fields as the interpreter stores locals in a dict, once per field with
no call, and is otherwise the dataclass: same fields, order, defaults, equality, hash, repr, and the
instances stay frozen (assignment still raises FrozenInstanceError).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    built = dataclasses.dataclass(frozen=True)(cls)
    if "__slots__" in cls.__dict__ or hasattr(built, "__post_init__"):
        return built  # nothing to gain, or an __init__ with more to it than storing fields
    namespace: dict[str, Any] = {"MISSING": dataclasses.MISSING}
    params, body = [], []
    for f in dataclasses.fields(built):  # type: ignore[arg-type]
        if not f.init or f.name in ("self", "d", "MISSING") or f.name.startswith(("_default_", "_factory_")):
            return built
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=MISSING")
            body.append(f"    if {f.name} is MISSING: {f.name} = _factory_{f.name}()")
        else:
            params.append(f.name)
        body.append(f"    d[{f.name!r}] = {f.name}")
    source = f"def __init__(self, {', '.join(params)}):\n    d = self.__dict__\n" + "\n".join(body) + "\n"
    # The source is built above from the class's own field names, nothing from outside.
    exec(source, namespace)  # noqa: S102  # nosec B102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = built.__init__.__doc__
    setattr(built, "__init__", init)  # noqa: B010 - replacing the generated method
    return built
