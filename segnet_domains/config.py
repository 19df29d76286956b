"""YAML run configs with command-line overrides.

A config is a nested mapping read from YAML, merged over defaults; every key
in the file and every ``--set key=value`` override must exist in the
defaults, so a typo is one clear error line instead of a silently ignored
setting. Values of overrides are parsed as YAML (``train.epochs=1``,
``model.features=[8,16,32,64,64]``, ``train.optimizer=adam``,
``data.root=null``).

Example::

    cfg = load_config("pipelines/configs/atlas_lesion.yaml", defaults,
                      overrides=["train.epochs=1", "model.features=[8,16,32,64,64]"])
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from segnet_domains.errors import InputError
from segnet_domains.io.safety import check_input


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        InputError: missing file, invalid YAML, or not a mapping at the top.
    """
    path = check_input(path, "config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(path, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read config ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"expected a mapping of settings, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` → ``("a.b", parsed value)``; the value is parsed as YAML.

    Raises:
        InputError: no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError("--set", f"expected key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        if raw.strip()[:1] in "[{":
            kind = "list" if raw.strip().startswith("[") else "mapping"
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise InputError(
                f"--set {key}", f"malformed {kind} {raw!r} ({problem}); e.g. [8,16,32,64,64]"
            ) from None
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    return key, value


def merge(
    defaults: Mapping[str, Any], user: Mapping[str, Any], source: str, prefix: str = ""
) -> dict[str, Any]:
    """Deep-merge ``user`` over ``defaults``, refusing keys the defaults don't have.

    Raises:
        InputError: an unknown key (named with its dotted path and the known keys).
    """
    out = copy.deepcopy(dict(defaults))
    for key, value in user.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            known = ", ".join(sorted(f"{prefix}{k}" for k in out))
            raise InputError(source, f"unknown config key {dotted!r} (known: {known})")
        if isinstance(out[key], dict) and isinstance(value, Mapping):
            out[key] = merge(out[key], value, source, prefix=f"{dotted}.")
        elif isinstance(out[key], dict) and value is not None:
            raise InputError(source, f"config key {dotted!r} is a section, not a value")
        else:
            check_type(dotted, out[key], value, source)
            out[key] = value
    return out


#: Text settings that also take a list (``train.class_weights``: a method name or one weight per class,
#: checked against the class count by the engine).
TEXT_OR_LIST = frozenset({"train.class_weights"})


def check_type(key: str, default: Any, value: Any, source: str) -> None:
    """A value must have its default's type (numbers, booleans, text, lists); ``None`` defaults take anything.

    An integer setting takes an integer, a float setting any number, a
    boolean ``true``/``false``, a list a list; ``null`` is accepted where the
    engine treats it as "unset".

    Raises:
        InputError: one line naming the key, the value and the type wanted.
    """
    if default is None or value is None:
        return
    wanted = None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            wanted = "true or false"
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            wanted = "an integer"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            wanted = "a number"
    elif isinstance(default, list | tuple):
        numbers = all(isinstance(d, int | float) for d in default)
        scalar = numbers and isinstance(value, int | float) and not isinstance(value, bool)
        if not isinstance(value, list | tuple) and not scalar:  # one number: e.g. SegNetBasic's width
            wanted = "a list"
    elif isinstance(default, str) and not isinstance(value, str | list | tuple):
        wanted = "text or a list" if key in TEXT_OR_LIST else "text"
    elif isinstance(default, str) and not isinstance(value, str) and key not in TEXT_OR_LIST:
        wanted = "text"
    if wanted:
        raise InputError(source, f"{key} must be {wanted}, got {value!r} ({type(value).__name__})")


def set_value(config: dict[str, Any], key: str, value: Any, source: str = "--set") -> None:
    """Set a dotted ``key`` that must already exist in ``config``.

    Raises:
        InputError: unknown key.
    """
    node: Any = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "top level"
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none: not a section"
            raise InputError(source, f"unknown config key {key!r} ({where} has: {known})")
        if i == len(parts) - 1:
            if isinstance(node[part], dict) and not isinstance(value, Mapping):
                raise InputError(source, f"config key {key!r} is a section, not a value")
            if not isinstance(node[part], dict):
                check_type(key, node[part], value, source)
            node[part] = (
                merge(node[part], value, source, f"{key}.") if isinstance(node[part], dict) else value
            )
        else:
            node = node[part]


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings in order (returns ``config``, modified in place)."""
    for text in overrides:
        key, value = parse_override(text)
        set_value(config, key, value, source=f"--set {key}")
    return config


def load_config(
    path: str | Path | None,
    defaults: Mapping[str, Any],
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    """Defaults ← YAML file ← ``--set`` overrides.

    Args:
        path: YAML file (``None``: defaults only).
        defaults: every allowed key with its default value.
        overrides: ``"key=value"`` strings.

    Raises:
        InputError: missing/invalid file, unknown key in the file or the overrides.
    """
    user = read_yaml(path) if path is not None else {}
    config = merge(defaults, user, str(path))
    return apply_overrides(config, overrides)
