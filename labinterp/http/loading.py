"""Request bodies read by a loader derived from the marshmallow schema at start-up: marshmallow's answers, cheaper.

The schema stays the one definition of what a body may hold (it also writes the OpenAPI document). At
start-up `compile_schema` walks its fields and builds one closure per field from the field's own
`_deserialize`, its `validators` and the schema's own `validates_schema` and `post_load` hooks, so no rule
is restated here. The closure knows only the success path: anything it does not accept (a missing
required field, a wrong type, a failed validator, an unknown key, anything it was not built for) makes
the body go to `schema.load` itself, which gives the answer and the error messages, exactly as before.
A schema using a feature the compiler does not handle is not compiled: marshmallow loads it every time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.utils import missing

from labinterp.http.body import check_json_request

Loader = Callable[[Any], Any]


class NotOnFastPath(Exception):
    """The body needs marshmallow itself: it is invalid, or holds something the loader was not built for."""


class NotCompilable(Exception):
    """The schema uses a feature the compiler does not handle (it is then loaded by marshmallow)."""


def _plain(field: fields.Field) -> None:
    if field.data_key is not None or field.attribute is not None or field.load_default is not missing:
        raise NotCompilable(f"{field.name}: data_key, attribute or load_default")
    if field.pre_load or field.post_load:
        raise NotCompilable(f"{field.name}: field-level processors")


def _field_loader(field: fields.Field) -> Loader:
    """A function value -> loaded value for a present value, raising NotOnFastPath when marshmallow must decide."""
    _plain(field)
    allow_none, validators = field.allow_none, tuple(field.validators)
    if isinstance(field, fields.Nested):
        if field.only is not None or field.exclude or field.many or field.unknown is not None:
            raise NotCompilable(f"{field.name}: Nested options")
        inner = compile_schema(field.schema, fallback=False)
        convert: Loader = inner
    elif isinstance(field, fields.List):
        item = _field_loader(field.inner)

        def convert(value: Any) -> Any:
            if type(value) is not list:
                raise NotOnFastPath
            return [item(v) for v in value]
    elif isinstance(field, (fields.Mapping, fields.Tuple)):
        raise NotCompilable(f"{field.name}: containers other than List")
    else:
        fast = _inline(field)
        if fast is not None:
            return fast
        deserialize, name = field._deserialize, field.name

        def convert(value: Any) -> Any:
            return deserialize(value, name, None)

    def load(value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise NotOnFastPath
        try:
            out = convert(value)
            for validator in validators:
                validator(out)
        except ValidationError as error:
            raise NotOnFastPath from error
        return out

    return load


def _passes(validator: Any) -> Callable[[Any], bool] | None:
    """The validator's own test as a predicate (True: marshmallow would let the value through), for the
    validators whose test is a comparison; None for any other."""
    kind = type(validator)
    if kind is validate.Range:
        low, high, low_in, high_in = validator.min, validator.max, validator.min_inclusive, validator.max_inclusive
        return lambda v: ((low is None or (v >= low if low_in else v > low))
                          and (high is None or (v <= high if high_in else v < high)))
    if kind is validate.Length:
        shortest, longest, equal = validator.min, validator.max, validator.equal
        if equal is not None:
            return lambda v: len(v) == equal
        return lambda v: (shortest is None or len(v) >= shortest) and (longest is None or len(v) <= longest)
    if kind is validate.OneOf:
        choices = validator.choices
        return lambda v: v in choices
    return None


def _inline(field: fields.Field) -> Loader | None:
    """For a String, or a Float (any subclass) given a JSON number: the field's conversion and its validators
    in one function, the same tests as marshmallow's; any other value goes to marshmallow. None: not such a field."""
    tests = [_passes(v) for v in field.validators]
    if any(t is None for t in tests):
        return None
    allow_none = field.allow_none
    if type(field) is fields.String:
        def load_text(value: Any) -> Any:
            if type(value) is str and all(t(value) for t in tests):  # type: ignore[misc]
                return value
            if value is None and allow_none:
                return None
            raise NotOnFastPath
        return load_text
    if isinstance(field, fields.Float) and not field.as_string and not field.allow_nan:
        def load_number(value: Any) -> Any:
            kind = type(value)
            if kind is float or kind is int:
                try:
                    number = float(value)
                except OverflowError:
                    raise NotOnFastPath from None
                if math.isfinite(number) and all(t(number) for t in tests):  # type: ignore[misc]
                    return number
            elif value is None and allow_none:
                return None
            raise NotOnFastPath
        return load_number
    return None


def _hooks(schema: Schema, tag: str) -> list[tuple[Callable[..., Any], bool]]:
    """The schema's own hooks for `tag`, bound, with whether each wants the original data."""
    out = []
    for attr_name, hook_many, kwargs in schema._hooks[tag]:
        if hook_many:
            raise NotCompilable(f"{tag}: pass_collection hooks")
        out.append((getattr(schema, attr_name), bool(kwargs.get("pass_original", False))))
    return out


def compile_schema(schema: Schema, *, fallback: bool = True) -> Loader:
    """A loader with `schema.load`'s answers. With `fallback`, a body the fast path does not accept is loaded
    by `schema.load` (which raises its ValidationError); without it (nested schemas), NotOnFastPath is raised."""
    try:
        fast = _compile(schema)
    except NotCompilable:
        if not fallback:
            raise
        return schema.load
    if not fallback:
        return fast

    def load(data: Any) -> Any:
        try:
            return fast(data)
        except NotOnFastPath:
            return schema.load(data)

    return load


def _compile(schema: Schema) -> Loader:
    if schema.many or schema.partial or schema.unknown != RAISE or schema._hooks[PRE_LOAD] or schema._hooks[VALIDATES]:
        raise NotCompilable("schema options or hooks")
    loaders = [(name, _field_loader(field), field.required) for name, field in schema.load_fields.items()]
    known = frozenset(schema.load_fields)
    validators, post_loads = _hooks(schema, VALIDATES_SCHEMA), _hooks(schema, POST_LOAD)

    def load(data: Any) -> Any:
        if type(data) is not dict or not known.issuperset(data):
            raise NotOnFastPath
        out = {}
        for name, field_load, required in loaders:
            value = data.get(name, missing)
            if value is missing:
                if required:
                    raise NotOnFastPath
                continue
            out[name] = field_load(value)
        try:
            for validator, pass_original in validators:
                if pass_original:
                    validator(out, data, many=False, partial=None, unknown=RAISE)
                else:
                    validator(out, many=False, partial=None, unknown=RAISE)
        except ValidationError as error:
            raise NotOnFastPath from error
        result: Any = out
        try:
            for processor, pass_original in post_loads:
                result = processor(result, data, many=False, partial=None, unknown=RAISE) if pass_original \
                    else processor(result, many=False, partial=None, unknown=RAISE)
        except ValidationError as error:
            raise NotOnFastPath from error
        return result

    return load


def json_arguments(blp: Any, schema: Schema, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """flask-smorest's `@blp.arguments(schema)` for a JSON body (the same OpenAPI document, the same errors), after
    the shared guard (media type, nesting depth: `http/body.check_json_request`), with the body loaded by
    `compile_schema(schema)`. A body that is not valid goes through webargs and marshmallow as before, so its
    400 or 422 answer is theirs."""
    if options.get("as_kwargs"):
        raise ValueError("json_arguments passes the loaded body as the view's first argument (as_kwargs=False)")
    parser = blp.ARGUMENTS_PARSER
    try:
        load: Loader | None = _compile(schema)
    except NotCompilable:
        load = None

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        documented = blp.arguments(schema, **options)(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            incoming = request._get_current_object()
            refused = check_json_request(incoming, current_app.extensions["labinterp"].settings["MAX_JSON_DEPTH"])
            if refused is not None:  # not JSON (415) or nested too deep (400), before any parsing
                return refused
            if load is not None:
                # webargs reads the body (its 400 for malformed JSON); an empty body is {} to it, as here.
                data = parser.load_json(incoming, schema)
                try:
                    loaded = load({} if data is missing else data)
                except NotOnFastPath:
                    pass
                else:
                    return view(loaded, *args, **kwargs)
            return documented(*args, **kwargs)

        wrapper._apidoc = documented._apidoc  # type: ignore[attr-defined]
        return wrapper

    return decorator


def documentation_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Keep what flask-smorest's `@blp.response` / `@blp.alt_response` decorators below this one document, and
    drop their wrappers at run time: for a view that always returns a Response they do nothing."""
    inner = view
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    inner._apidoc = view._apidoc  # type: ignore[attr-defined]
    return inner
