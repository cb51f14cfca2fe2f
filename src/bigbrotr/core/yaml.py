"""YAML configuration loading with environment interpolation and located errors.

``${VAR}`` and ``${VAR:-default}`` are expanded inside string scalars only, after
parsing, so a value from the environment can never change the document's
structure. A plain (unquoted) scalar that was interpolated is typed again, so
``port: ${PORT}`` yields an int just as ``port: 8001`` would; a string that took
text from the environment is a ``FromEnvironment``, so errors need not echo it.

A configuration file is small: a document that expands (through aliases) to
more than ``MAX_NODES`` nodes is refused before it is built, and a key given
twice in one mapping is an error naming both lines. ``load_yaml_with_lines``
also says where each key was written, so a mistake found later (by pydantic)
can name its line too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import yaml

__all__ = [
    "ENVIRONMENT_TYPES",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "ConfigFileError",
    "FloatFromEnvironment",
    "FromEnvironment",
    "IntFromEnvironment",
    "KeyLines",
    "load_yaml",
    "load_yaml_with_lines",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: Nodes a document may expand to, aliases counted at every use.
MAX_NODES = 10_000


class FromEnvironment(str):
    """A string that took (part of) its text from ``${VAR}``: maybe a secret, never echoed."""

    __slots__ = ()


class IntFromEnvironment(int):
    """An int read from ``${VAR}`` (a PIN is a secret too): never echoed."""


class FloatFromEnvironment(float):
    """A float read from ``${VAR}``: never echoed."""


#: Where each key was written: its path (keys, and list indices as text) -> line (from 1).
KeyLines: TypeAlias = Mapping[tuple[str, ...], int]

#: Values that may carry an environment variable's text, and their marked types.
ENVIRONMENT_TYPES = (FromEnvironment, IntFromEnvironment, FloatFromEnvironment)
_FROM_ENVIRONMENT: dict[type, type] = {int: IntFromEnvironment, float: FloatFromEnvironment}


class ConfigFileError(ValueError):
    """A configuration file that cannot be read as a mapping.

    The message starts with ``file:line:`` so people and editors can jump to it.
    """


class _InterpolatingLoader(yaml.SafeLoader):
    """SafeLoader that expands ``${VAR}`` in string scalars."""

    def construct_interpolated(self, node: yaml.ScalarNode) -> Any:
        raw: str = self.construct_scalar(node)
        if "${" not in raw:
            return raw

        def expand(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is not None:
                return value
            if default is not None:
                return default
            raise yaml.MarkedYAMLError(
                problem=f"environment variable {name} is not set (use ${{{name}:-default}})",
                problem_mark=node.start_mark,
            )

        value = _VAR.sub(expand, raw)
        if node.style is None:  # plain scalar: let YAML type the expanded text
            tag = self.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
            if tag != "tag:yaml.org,2002:str":
                typed = self.construct_object(yaml.ScalarNode(tag, value))
                marked = _FROM_ENVIRONMENT.get(type(typed))
                return marked(typed) if marked else typed
        return FromEnvironment(value)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key written twice (YAML would silently keep the last).

        Keys merged in with ``<<: *base`` may be overridden, as YAML intends;
        only keys written in this mapping itself are compared.
        """
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: SafeLoader reports it
            line = key_node.start_mark.line + 1
            if key in first_lines:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {str(key)!r} (first given at line {first_lines[key]})",
                    problem_mark=key_node.start_mark,
                )
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


_InterpolatingLoader.add_constructor(
    "tag:yaml.org,2002:str", _InterpolatingLoader.construct_interpolated
)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in ``root`` with every alias counted at each use, without building anything.

    Aliases make the node graph a DAG; sizes are memoised per node, so even
    a "billion laughs" document is measured in time linear in its text.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if children_done or not children:
            sizes[id(node)] = min(1 + sum(sizes[id(child)] for child in children), MAX_NODES + 1)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _key_lines(root: yaml.Node) -> dict[tuple[str, ...], int]:
    """Where each key (and list item) under ``root`` was written, after merges.

    Constructing the document flattened ``<<: *base`` merges into each
    mapping's node, merged keys first, so the last line seen for a path is
    the one whose value the document kept. Aliases are walked at each use:
    ``MAX_NODES`` already bounds that.
    """
    lines: dict[tuple[str, ...], int] = {}
    stack: list[tuple[tuple[str, ...], yaml.Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (*path, str(key_node.value))
                    lines[key] = key_node.start_mark.line + 1
                    stack.append((key, value_node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                key = (*path, str(index))
                lines[key] = item.start_mark.line + 1
                stack.append((key, item))
    return lines


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a YAML mapping from ``path``, expanding environment variables.

    Args:
        path: The file to read.

    Returns:
        The top-level mapping (empty for an empty file).

    Raises:
        FileNotFoundError: If the file does not exist.
        ConfigFileError: On text that is not UTF-8, a syntax error, an unset
            variable without a default, or a top level that is not a mapping;
            the message names file and line.
        OSError: If the file cannot be read.
    """
    return load_yaml_with_lines(path)[0]


#: The largest configuration file read; configurations are a few kilobytes.
MAX_FILE_BYTES = 1024 * 1024


def load_yaml_with_lines(path: str | os.PathLike[str]) -> tuple[dict[str, Any], KeyLines]:
    """``load_yaml``, and the line each key was written on.

    Args:
        path: The file to read.

    Returns:
        The top-level mapping (empty for an empty file), and its ``KeyLines``:
        ``("metrics", "port")`` is the line of ``port:`` under ``metrics:``.

    Raises:
        FileNotFoundError, ConfigFileError, OSError: As ``load_yaml``.
    """
    file = Path(path)
    with file.open("rb") as stream:  # bounded: /dev/zero or a log named by mistake
        raw = stream.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigFileError(f"{file}: over {MAX_FILE_BYTES // 1024} KiB: not a config file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(
            f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        loader = _InterpolatingLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigFileError(
            f"{file}:{line}: character U+{code:04X} is not allowed in YAML"
        ) from None
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_NODES:
            raise ConfigFileError(
                f"{file}: the document expands to more than {MAX_NODES} values (aliases "
                "counted at every use); a configuration is never that big"
            )
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        raise ConfigFileError(f"{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{file}: {exc}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigFileError(f"{file}: collections nested too deeply") from None
    finally:
        loader.dispose()
    if node is None or data is None:
        return {}, {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigFileError(
            f"{file}:{node.start_mark.line + 1}: top level must be a mapping of settings, "
            f"got a {kind}"
        )
    return data, _key_lines(node)
