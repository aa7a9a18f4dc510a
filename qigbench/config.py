"""Typed config dataclasses: built from ``key=value`` options, checked, and written as plain data.

Every method, solver and provider config is a frozen dataclass whose annotations are the truth:
:func:`build` reads them with :func:`typing.get_type_hints` (``Literal`` choices, ``bool``,
``int``, ``float``, ``str``, ``tuple[X, ...]``, ``X | None``, nested dataclasses set as
``sub.field=value``) and converts the strings of ``-o key=value`` / suite options accordingly.

:func:`config_to_dict` is the canonical plain form: what ``describe()`` reports and what the
results store hashes. Two field markers keep that form stable as configs grow:

* :func:`omit_default` -- a knob added after configurations were stored (a solver field a method
  now exposes, e.g. GPTQ's ``static_groups``) is left out of the plain form while at its default,
  so every existing configuration keeps its hash; set to anything else it is part of it.
* :func:`exact_option` -- a knob that cannot change the result beyond floating-point rounding
  (how many path points go into one batched call, whether exact shortcuts are taken): it is an
  execution detail, so :func:`changed_fields` (what a variant label shows) never lists it.
* ``only_with`` (a class attribute: field -> (selector, value)) -- a field that applies only when
  another field has one value (``qig`` only with ``sensitivity=qig``, TLQ's ``damp`` only with
  ``solver=gptq``). :func:`check_only_with` rejects a config that sets such a field away from its
  default while the selector has another value, naming the fix.

This module sits at the bottom of the package (it imports only :mod:`qigbench.errors`), so
solvers, providers and methods all describe their configs the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from qigbench.errors import QigbenchError

#: dataclass field metadata key of :func:`omit_default`
OMIT_DEFAULT = "qigbench.omit_default"
#: dataclass field metadata key of :func:`exact_option`
EXACT = "qigbench.exact"
#: what a boolean option accepts
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")

C = TypeVar("C")


class OptionError(QigbenchError, ValueError):
    """A ``key=value`` option that does not fit the config it is given to."""


def omit_default(default: Any) -> Any:
    """A dataclass field left out of :func:`config_to_dict` while it equals ``default``."""
    return dataclasses.field(default=default, metadata={OMIT_DEFAULT: True})


def exact_option(default: Any, *, omit: bool = True) -> Any:
    """A field that cannot change the result beyond float rounding (never part of a variant label);
    left out of :func:`config_to_dict` at its default unless ``omit=False``."""
    metadata = {EXACT: True, OMIT_DEFAULT: True} if omit else {EXACT: True}
    return dataclasses.field(default=default, metadata=metadata)


def changed_fields(config: Any, base: Any) -> dict[str, Any]:
    """Every field of ``config`` that differs from ``base`` (same class, or one ``config`` embeds),
    by its option name (``qig.steps``), fields marked :func:`exact_option` left out. Nested configs
    are compared field by field; the values are plain data (:func:`config_to_dict`'s form)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.metadata.get(EXACT) or not f.init:
            continue
        value, other = getattr(config, f.name), getattr(base, f.name, dataclasses.MISSING)
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and dataclasses.is_dataclass(other):
            out.update({f"{f.name}.{k}": v for k, v in changed_fields(value, other).items()})
        elif value != other:
            out[f.name] = _plain(value)
    return out


# -- the plain form ---------------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    """``config`` as plain JSON-able data: dataclasses -> dicts (fields in declaration order, those
    marked :func:`omit_default` only when set), tuples -> lists, enums -> their values."""
    out = _plain(config)
    if not isinstance(out, dict):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(config).__name__}")
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get(OMIT_DEFAULT) and v == _default(f):
                continue
            out[f.name] = _plain(v)
        return out
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return value.value
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def field_defaults(config_class: type[Any]) -> dict[str, Any]:
    return {f.name: _default(f) for f in dataclasses.fields(config_class)}


# -- fields that apply only with a selector value ---------------------------------------------
def check_only_with(config: Any, owner: str | None = None) -> None:
    """Raise :class:`OptionError` when a field of ``config`` listed in its class's ``only_with``
    differs from its default while its selector has another value."""
    rules: Mapping[str, tuple[str, Any]] = getattr(type(config), "only_with", {})
    if not rules:
        return
    defaults = field_defaults(type(config))
    wrong: dict[tuple[str, Any], list[str]] = {}
    for name, (selector, wanted) in rules.items():
        if getattr(config, selector) != wanted and getattr(config, name) != defaults[name]:
            shown = f"{name}.*" if dataclasses.is_dataclass(defaults[name]) else name
            wrong.setdefault((selector, wanted), []).append(shown)
    if wrong:
        owner = owner or type(config).__name__
        parts = [
            f"{', '.join(names)} {'options apply' if len(names) > 1 or names[0].endswith('*') else 'applies'} "
            f"only with {selector}={_text(wanted)} (here {selector}={_text(getattr(config, selector))}); "
            f"drop {'them' if len(names) > 1 or names[0].endswith('*') else 'it'} or pass -o {selector}={_text(wanted)}"
            for (selector, wanted), names in wrong.items()
        ]
        raise OptionError(f"{owner}: " + "; ".join(parts))


def check_choices(config: Any, owner: str | None = None) -> None:
    """Raise :class:`OptionError` when a ``Literal``-typed field of ``config`` holds another value
    (the parser checks options; this catches a config built directly in Python)."""
    for name, hint in type_hints(type(config)).items():
        inner, optional = _strip_optional(hint)
        value = getattr(config, name)
        if get_origin(inner) is Literal and not (optional and value is None) and value not in get_args(inner):
            allowed = ", ".join(_text(a) for a in get_args(inner))
            raise OptionError(f"{owner or type(config).__name__} {name}={value!r}: choose one of {allowed}")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# -- options -> config ------------------------------------------------------------------------
def build(config_class: type[C], options: Mapping[str, Any], owner: str) -> C:
    """``config_class`` with ``options`` applied over its defaults.

    Keys may use ``-`` for ``_``; ``sub.field`` sets a field of a nested config. String values are
    converted by the field's type hint; other values are taken as given (the Python API)."""
    return _build(config_class, options, owner, None)


def derive(base: C, options: Mapping[str, Any], owner: str) -> C:
    """The config instance ``base`` with ``options`` applied over it (same conversions as :func:`build`)."""
    return _build(type(base), options, owner, base)


def _build(config_class: type[C], options: Mapping[str, Any], owner: str, base: Any) -> C:
    hints = type_hints(config_class)
    defaults = field_defaults(config_class) if base is None else {n: getattr(base, n) for n in hints}
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, raw in options.items():
        key = key.replace("-", "_")
        head, _, rest = key.partition(".")
        if head not in hints:
            known = ", ".join(sorted(hints)) or "(none)"
            raise OptionError(f"{owner} has no option {head!r}; its options are: {known}")
        if rest:
            sub = _dataclass_of(hints[head])
            if sub is None:
                raise OptionError(f"option {head} of {owner} has no sub-options (got {key!r})")
            nested.setdefault(head, {})[rest] = raw
        else:
            values[head] = convert(raw, hints[head], f"{owner} {key}" if owner else key)
    for head, sub_options in nested.items():
        sub = _dataclass_of(hints[head])
        assert sub is not None
        start = values.get(head, defaults[head])
        values[head] = _build(sub, sub_options, f"{owner}.{head}", start if dataclasses.is_dataclass(start) else None)
    try:
        if base is not None:
            return dataclasses.replace(base, **values)  # type: ignore[no-any-return]
        return config_class(**values)
    except OptionError:
        raise
    except (TypeError, ValueError) as err:
        raise OptionError(f"invalid options for {owner}: {err}") from err


_HINTS: dict[type[Any], dict[str, Any]] = {}


def type_hints(config_class: type[Any]) -> dict[str, Any]:
    """The resolved type of every (init) field of a config dataclass (read once per class)."""
    if config_class not in _HINTS:
        if not dataclasses.is_dataclass(config_class):
            raise TypeError(f"{config_class!r} is not a dataclass")
        hints = typing.get_type_hints(config_class)
        _HINTS[config_class] = {f.name: hints[f.name] for f in dataclasses.fields(config_class) if f.init}
    return _HINTS[config_class]


def _dataclass_of(hint: Any) -> type[Any] | None:
    inner, _ = _strip_optional(hint)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        args = get_args(hint)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007 - built from a tuple
    return hint, False


def convert(raw: Any, hint: Any, key: str) -> Any:
    """``raw`` (a string from the command line) as a value of type ``hint``; non-strings pass."""
    if not isinstance(raw, str):
        return raw
    inner, optional = _strip_optional(hint)
    if optional and raw.strip().lower() == "none":
        return None  # "none" means unset only where the field is optional
    return _convert(raw.strip(), inner, key)


def _convert(raw: str, hint: Any, key: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        for choice in allowed:
            if raw == _text(choice) or (isinstance(choice, str) and raw.lower() == choice.lower()):
                return choice
        raise OptionError(f"option {key}={raw!r}: choose one of {', '.join(_text(a) for a in allowed)}")
    if hint is bool:
        word = raw.lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise OptionError(f"option {key}={raw!r} should be true or false")
        return word in TRUE_WORDS
    if hint is int or hint is float:
        try:
            return hint(raw)
        except ValueError:
            raise OptionError(f"option {key}={raw!r} should be {'an int' if hint is int else 'a number'}") from None
    if hint is str or hint is Any:
        return raw
    if origin is tuple:
        args = get_args(hint)
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(p, args[0], key) for p in parts)
        if len(parts) != len(args):
            raise OptionError(f"option {key}={raw!r} should be {len(args)} comma-separated values")
        return tuple(_convert(p, a, key) for p, a in zip(parts, args, strict=True))
    if origin in (Union, types.UnionType):
        for arm in get_args(hint):
            try:
                return _convert(raw, arm, key)
            except OptionError:
                continue
        raise OptionError(f"option {key}={raw!r} fits none of {hint}")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        raise OptionError(f"option {key} is structured; set its fields as {key.split()[-1]}.FIELD=VALUE")
    raise OptionError(f"option {key}: fields of type {hint} cannot be set from the command line")


def project(config: Any, part: type[Any]) -> dict[str, Any]:
    """The values of ``part``'s fields in ``config`` (a config that embeds ``part`` by inheritance),
    as keyword arguments for ``part``: a solver's config out of a method's, nothing copied by hand."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(part) if f.init}
