"""Configuration models' shared rules, and how a configuration is shown to people.

``Settings`` is the base of every configuration model (``BaseServiceConfig``,
``MetricsConfig``, a service's own): unknown keys are errors, values are
frozen, and a boolean is never taken for a number (pydantic would read
``true`` as 1). ``describe_validation_error`` turns pydantic's errors into one
line that echoes no value from the environment and no long value, and for an
unknown key names its line and the closest known key; ``masked`` is the
configuration as it may be logged or printed, secrets hidden. A
``ConfigPath`` field written in a YAML file is relative to that file.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from bigbrotr.core.yaml import ENVIRONMENT_TYPES, KeyLines

__all__ = [
    "CONFIG_DIRECTORY",
    "MASK",
    "ConfigPath",
    "Settings",
    "describe_validation_error",
    "masked",
]

MASK = "********"
#: Field names whose values are secrets (and so is everything beneath them).
_SECRET_NAME = re.compile(
    r"passw(or)?d|pwd|secret|token|api_?key|credential|authorization|private_?key|cookie",
    re.IGNORECASE,
)
#: The password in ``scheme://user:password@host`` (up to the last ``@``: passwords
#: written unencoded may hold ``@`` or ``/``).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)\S*(?P<at>@)")
#: Secret-named query parameters in a URL (``?token=...``).
_URL_PARAMETER = re.compile(
    r"(?P<head>[?&][^=&#\s]*(?:passw(?:or)?d|secret|token|key|signature|sig|auth)[^=&#\s]*=)[^&#\s]*",
    re.IGNORECASE,
)
_MAX_SHOWN = 80
#: The validation context key naming the directory of the YAML file being read.
CONFIG_DIRECTORY = "config_directory"


def _against_config_file(path: str, info: ValidationInfo) -> str:
    directory = (info.context or {}).get(CONFIG_DIRECTORY)
    if directory is None or os.path.isabs(path):
        return path
    return os.path.join(directory, path)


#: A file named in a configuration: relative to the YAML file that names it
#: (validated with ``context={CONFIG_DIRECTORY: ...}``, as ``load_config``
#: does), else to the working directory, as any path given in Python.
ConfigPath = Annotated[str, AfterValidator(_against_config_file)]


def _wants_number(annotation: Any) -> bool:
    """Whether a field's type takes numbers but not booleans (``int``, ``float | None``...)."""
    options = set(typing.get_args(annotation)) if _is_union(annotation) else {annotation}
    return bool(options & {int, float}) and bool not in options


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


class Settings(BaseModel):
    """Base of every configuration model: strict about keys, booleans and mutation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _wants_number(field.annotation):
            raise ValueError("expected a number, not a boolean")
        return value


def _shown(value: Any) -> str:
    """A value as an error message may echo it: never from the environment, never long."""
    if isinstance(value, ENVIRONMENT_TYPES):
        return "a value from the environment, not shown"
    if isinstance(value, dict | list):  # a whole section: its fields may be secrets
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"


def _options(annotation: Any) -> list[Any]:
    """The types an annotation allows: a union's members, ``Annotated`` unwrapped."""
    if typing.get_origin(annotation) is Annotated:
        return _options(typing.get_args(annotation)[0])
    if _is_union(annotation):
        return [option for member in typing.get_args(annotation) for option in _options(member)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """The keys ``model`` takes (names and string aliases) -> the field's type."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        for key in (name, field.alias, field.validation_alias):
            if isinstance(key, str):
                keys[key] = field.annotation
    return keys


def _inside(annotation: Any, part: str | int) -> Any:
    """The type found at ``part`` (a key, index or union tag) of ``annotation``, or None."""
    for option in _options(annotation):
        if _is_model(option):
            if part == option.__name__:  # pydantic's tag for a model in a union
                return option
            found = _keys(option).get(str(part))
            if found is not None:
                return found
        origin, args = typing.get_origin(option), typing.get_args(option)
        if origin in (dict, Mapping) and len(args) == 2:
            return args[1]
        if origin in (list, set, frozenset, tuple, Sequence) and args:
            return args[0]
    return None


def _close_key(model: type[BaseModel], path: Sequence[str | int]) -> str | None:
    """The known field nearest to the unknown last part of ``path`` (dotted), if one is close."""
    annotation: Any = model
    for part in path[:-1]:
        annotation = _inside(annotation, part)
    known = [key for option in _options(annotation) if _is_model(option) for key in _keys(option)]
    matches = difflib.get_close_matches(str(path[-1]), known, n=1)
    return ".".join([*(str(part) for part in path[:-1]), matches[0]]) if matches else None


def describe_validation_error(
    exc: ValidationError,
    *,
    model: type[BaseModel] | None = None,
    lines: KeyLines | None = None,
    within: tuple[str, ...] = (),
) -> str:
    """Summarise a pydantic error as one line naming each bad field.

    Args:
        exc: The validation error.
        model: The model that was validated; an unknown key is then given
            the closest key it knows at that level, if one is close.
        lines: Where each key was written (``load_yaml_with_lines``); an
            unknown key is then given its line.
        within: Where the model sits in its file (``("services", "eu",
            "config")`` in a process file): fields are named from the file's top.

    Returns:
        For example ``field 'metrics.port': port must be ... (got 80)``, or
        ``unknown field 'batch_sise' at line 3 (did you mean 'batch_size'?)``.
    """
    parts = []
    for error in exc.errors():
        field = ".".join((*within, *(str(part) for part in error["loc"]))) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            line = (lines or {}).get((*within, *(str(part) for part in error["loc"])))
            close = _close_key(model, error["loc"]) if model is not None else None
            close = ".".join((*within, close)) if close is not None else None
            parts.append(
                f"unknown field '{field}'"
                + (f" at line {line}" if line is not None else "")
                + (f" (did you mean '{close}'?)" if close is not None else "")
            )
        elif error["type"] == "missing":
            parts.append(f"field '{field}': required but not given")
        else:
            parts.append(f"field '{field}': {message} (got {_shown(error['input'])})")
    return "; ".join(parts)


def masked(config: BaseModel) -> dict[str, Any]:
    """``config`` as JSON-ready data with its secrets replaced by ``MASK``.

    Hidden: ``SecretStr`` fields (pydantic already does), every text under a
    field whose name says secret (password, passwd, pwd, secret, token,
    api_key, credentials, authorization, private_key, cookie), and in any
    URL the ``user:password@`` password and secret-named query parameters.
    Numbers and booleans are shown: they are limits and switches, not secrets.
    """

    def hide(value: Any, secret: bool) -> Any:
        if isinstance(value, dict):
            return {
                key: hide(item, secret or bool(_SECRET_NAME.search(key)))
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [hide(item, secret) for item in value]
        if not isinstance(value, str):
            return value
        if secret and value:
            return MASK
        value = _URL_PASSWORD.sub(rf"\g<head>{MASK}\g<at>", value)
        return _URL_PARAMETER.sub(rf"\g<head>{MASK}", value)

    data: dict[str, Any] = hide(config.model_dump(mode="json"), False)
    return data
