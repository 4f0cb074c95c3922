"""Config values in and out: ``key=value`` overrides, plain dicts and ``config.yaml``.

Overrides use dotted paths into :class:`~fabricdet.engine.config.RunConfig` and are parsed to
the field's declared type::

    train.max_steps=200  model.nms=greedy  model.strides=[8,16,32]  model.sinkhorn.eps=0.1
    eval.nms=none        train.amp=false   model.strides=8,16,32

Strings are taken as written; other types go through YAML (``[8,16,32]``, ``true``) and are
then checked against the field type, so a typo fails here with the key named, not later in
the training loop.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fabricdet.data.formats.atomic import atomic_write_text
from fabricdet.engine.config import ConfigError, RunConfig, validate

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def _field_types(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the string annotations of ``from __future__ import annotations``.
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if typing.get_args(tp) or not hasattr(tp, "__name__"):
        return str(tp).replace("typing.", "")
    return str(tp.__name__)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to type ``tp``, or a :class:`ConfigError` naming ``key``."""
    bad = ConfigError(f"{key}={value!r} is invalid: expected {_type_name(tp)}")
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], key) for v in value]
        elif origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f"{key}={value!r} is invalid: expected {len(args)} values")
            items = [_coerce(v, a, key) for v, a in zip(value, args, strict=True)]
        else:
            items = [_coerce(v, args[0], key) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} is a section; set its keys, e.g. {key}.<name>=<value>")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    return value


def leaf_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every settable dotted key of a config dataclass (``train.lr``, ``model.sinkhorn.eps``)."""
    keys: list[str] = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys += leaf_keys(tp, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _unknown_key(key: str, cls: type, prefix: str) -> ConfigError:
    valid = leaf_keys(cls, prefix)
    close = difflib.get_close_matches(key, leaf_keys(), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}")


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """A config dataclass from a (nested) dict; missing keys keep their defaults.

    Raises:
        ConfigError: an unknown key (listing the valid ones) or a value of the wrong type.
    """
    types_ = _field_types(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in types_:
            raise _unknown_key(f"{prefix}{name}", cls, prefix)
        kwargs[name] = _coerce(value, types_[name], f"{prefix}{name}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A nested dict of plain YAML/JSON types (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def apply_overrides(cfg: RunConfig, overrides: Iterable[str]) -> RunConfig:
    """A validated copy of ``cfg`` with ``key=value`` overrides applied (input unchanged).

    Raises:
        ConfigError: malformed override, unknown key, value of the wrong type, invalid value.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.max_steps=200)")
        *path, leaf = key.split(".")
        section: Any = cfg
        prefix = ""
        for part in path:
            if not dataclasses.is_dataclass(section) or part not in _field_types(type(section)):
                raise _unknown_key(key, type(section), prefix)
            section = getattr(section, part)
            prefix += f"{part}."
        types_ = _field_types(type(section)) if dataclasses.is_dataclass(section) else {}
        if leaf not in types_:
            raise _unknown_key(key, type(section), prefix)
        tp = types_[leaf]
        # Strings are taken verbatim ("greedy", paths); everything else is YAML-parsed.
        plain_str = tp is str or (_is_union(tp) and str in typing.get_args(tp))
        value: Any = raw if plain_str else _yaml_scalar(raw, key)
        setattr(section, leaf, _coerce(value, tp, key))
    return validate(cfg)


def _yaml_scalar(raw: str, key: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"{key}={raw!r}: cannot parse the value") from None


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> RunConfig:
    """A validated :class:`RunConfig` from its dict form (``to_dict``'s inverse)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of sections (model, data, train, eval)")
    try:
        return validate(from_dict(RunConfig, data))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


#: Model settings whose default changed, with what files written before them meant: a saved
#: config always holds every key of its time, so a missing one is one that did not exist yet.
_BEFORE_KEY_EXISTED: dict[str, Any] = {
    "texture_input": False,
    "set_loss_spatial_grad": True,
    "set_loss_plan_grad": "raw",
    "medoid_boxes": False,
}
#: Model settings that were renamed: old key -> (new key, new value of each old value).
_RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "set_loss_suppress_only": ("set_loss_scores", lambda only: "matched" if only else "all"),
}


def saved_config(data: Mapping[str, Any], where: str) -> RunConfig:
    """:func:`config_from_dict` of the complete config saved in a model, checkpoint or
    exported file: keys it lacks take the behaviour of when it was written (a model trained
    without the texture channel keeps running without it)."""
    model = data.get("model") if isinstance(data, Mapping) else None
    if isinstance(model, Mapping):
        model = {**_BEFORE_KEY_EXISTED, **model}
        for old, (new, convert) in _RENAMED.items():
            if old in model:
                model[new] = convert(model.pop(old))
        data = {**data, "model": model}
    return config_from_dict(data, where)


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write ``cfg`` as YAML, atomically."""
    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(path: Path) -> RunConfig:
    """Read a ``config.yaml`` written by :func:`save_config` (or by hand).

    Raises:
        ConfigError: missing or unparsable file, unknown key, bad value; naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; a run folder holds config.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix or delete the file") from None
    return config_from_dict(data or {}, where=str(path))
