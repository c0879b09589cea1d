"""`@frozen`: a frozen dataclass with slots whose constructor calls each slot's setter directly.

A frozen dataclass's generated `__init__` calls `object.__setattr__` once per field, which looks the
field up by name each time: for the engine's outcomes (up to 24 fields, several per result) that was
about two fifths of an interpretation's instructions. This one calls each slot's setter, bound once at
class creation (a third of the cost), and reads stay slot reads (a constructor writing the instance
dictionary instead was cheaper to call but made every later read slower). Otherwise it is the
dataclass: same fields, order, defaults, equality, hash, repr; instances stay frozen.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    built = dataclasses.dataclass(frozen=True, slots=True)(cls)
    if hasattr(built, "__post_init__"):
        return built  # an __init__ with more to it than storing fields
    namespace: dict[str, Any] = {"MISSING": dataclasses.MISSING}
    params, body = [], []
    for f in dataclasses.fields(built):  # type: ignore[arg-type]
        if not f.init or f.name in ("self", "MISSING") or f.name.startswith(("_default_", "_factory_", "_set_")):
            return built
        # the slot's own setter, bound once: what object.__setattr__ finds by name on every call
        namespace[f"_set_{f.name}"] = built.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=MISSING")
            body.append(f"    if {f.name} is MISSING: {f.name} = _factory_{f.name}()")
        else:
            params.append(f.name)
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    # The source is built above from the class's own field names, nothing from outside.
    exec(source, namespace)  # noqa: S102  # nosec B102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = built.__init__.__doc__
    setattr(built, "__init__", init)  # noqa: B010 - replacing the generated method
    return built
