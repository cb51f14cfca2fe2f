"""Configuration models' shared rules, and how a configuration is shown to people.

``Settings`` is the base of every configuration model (``BaseServiceConfig``,
``MetricsConfig``, a service's own): unknown keys are errors, values are
frozen, and a boolean is never taken for a number (pydantic would read
``true`` as 1). ``describe_validation_error`` turns pydantic's errors into one
line that echoes no value from the environment and no long value;
``masked`` is the configuration as it may be logged or printed, secrets hidden.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from bigbrotr.core.yaml import ENVIRONMENT_TYPES

__all__ = ["MASK", "Settings", "describe_validation_error", "masked"]

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


def describe_validation_error(exc: ValidationError) -> str:
    """Summarise a pydantic error as one line naming each bad field.

    Args:
        exc: The validation error.

    Returns:
        For example ``field 'metrics.port': port must be ... (got 80)``.
    """
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown field '{field}'")
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
