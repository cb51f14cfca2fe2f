from pathlib import Path

import pytest

from bigbrotr.core.yaml import (
    MAX_NODES,
    ConfigFileError,
    FloatFromEnvironment,
    FromEnvironment,
    IntFromEnvironment,
    load_yaml,
    load_yaml_with_lines,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_loads_a_mapping(tmp_path: Path) -> None:
    """A mapping loads with YAML types intact."""
    path = write(tmp_path, "interval: 5\nmetrics:\n  enabled: true\n  host: 0.0.0.0\n")
    assert load_yaml(path) == {"interval": 5, "metrics": {"enabled": True, "host": "0.0.0.0"}}


def test_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    """An empty file (or only comments) means all defaults."""
    assert load_yaml(write(tmp_path, "# nothing here\n")) == {}


def test_interpolates_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """${VAR} and ${VAR:-default} expand; plain scalars are typed after expansion."""
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("HOST", "db.internal")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    text = (
        "port: ${PORT}\n"
        "quoted: '${PORT}'\n"
        "url: http://${HOST}:${PORT}/x\n"
        "enabled: ${UNSET_ONE:-true}\n"
        "empty: '${UNSET_ONE:-}'\n"
    )
    assert load_yaml(write(tmp_path, text)) == {
        "port": 9100,
        "quoted": "9100",
        "url": "http://db.internal:9100/x",
        "enabled": True,
        "empty": "",
    }


def test_environment_cannot_change_structure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value with YAML syntax stays one string; it is not parsed as YAML."""
    monkeypatch.setenv("TRICKY", "a: b\nc: [1, 2]")
    assert load_yaml(write(tmp_path, "name: ${TRICKY}\n")) == {"name": "a: b\nc: [1, 2]"}


def test_unset_variable_names_var_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset ${VAR} without default is an error naming the variable, file and line."""
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write(tmp_path, "a: 1\nb: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigFileError, match=r"config\.yaml:2: .*NOT_SET_ANYWHERE is not set"):
        load_yaml(path)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    """A path that does not exist raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        load_yaml(tmp_path / "absent.yaml")


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error reports file:line."""
    path = write(tmp_path, "a: 1\nb: 2\nc: [unclosed\n")
    with pytest.raises(ConfigFileError, match=r"config\.yaml:4: "):
        load_yaml(path)


def test_bad_indentation_names_the_line(tmp_path: Path) -> None:
    """A mapping value where none is allowed points at its line."""
    path = write(tmp_path, "metrics:\n  port: 1\n bad: 2\n")
    with pytest.raises(ConfigFileError, match=r"config\.yaml:3: "):
        load_yaml(path)


@pytest.mark.parametrize(
    ("text", "kind", "line"), [("# x\n- 1\n- 2\n", "list", 2), ("42\n", "int", 1)]
)
def test_non_mapping_top_level_names_file_and_line(
    tmp_path: Path, text: str, kind: str, line: int
) -> None:
    """A top level that is not a mapping is an error naming file, line and what it got."""
    with pytest.raises(ConfigFileError, match=rf"config\.yaml:{line}: .*mapping.*{kind}"):
        load_yaml(write(tmp_path, text))


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    """Python object tags are not constructed (safe loading)."""
    path = write(tmp_path, "x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigFileError, match=r"config\.yaml:1: "):
        load_yaml(path)


def test_alias_bombs_are_refused_quickly(tmp_path: Path) -> None:
    """A small file whose aliases expand to billions of values is one short error, at once."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert path.stat().st_size < 600  # the was 466 bytes
    with pytest.raises(ConfigFileError) as info:
        load_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: the document expands to more than {MAX_NODES} values")
    assert len(message) < 300


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    """Ordinary alias use (a shared block) still loads."""
    text = "base: &base {enabled: true, host: shared}\nmetrics: *base\n"
    assert load_yaml(write(tmp_path, text))["metrics"] == {"enabled": True, "host": "shared"}


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    """A key given twice in one mapping is an error naming both lines, at any depth."""
    path = write(tmp_path, "interval: 5\nmetrics:\n  port: 1\n  host: x\n  port: 2\n")
    with pytest.raises(
        ConfigFileError, match=r":5: duplicate key 'port' \(first given at line 3\)"
    ):
        load_yaml(path)
    assert load_yaml(write(tmp_path, "a: {port: 1}\nb: {port: 2}\n")) == {
        "a": {"port": 1},
        "b": {"port": 2},
    }


def test_strings_from_the_environment_are_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A string that took text from ${VAR} is a FromEnvironment; a literal one is not."""
    monkeypatch.setenv("TOKEN", "s3cr3t")
    data = load_yaml(write(tmp_path, "token: ${TOKEN}\nurl: 'x-${TOKEN}'\nplain: text\n"))
    assert isinstance(data["token"], FromEnvironment) and data["token"] == "s3cr3t"
    assert isinstance(data["url"], FromEnvironment)
    assert not isinstance(data["plain"], FromEnvironment)


def test_merge_keys_load_and_may_be_overridden(tmp_path: Path) -> None:
    """`<<: *base` merges a shared block; keys written beside it override the merged ones."""
    text = "base: &base {enabled: true, host: shared}\nmetrics:\n  <<: *base\n  host: own\n"
    assert load_yaml(write(tmp_path, text))["metrics"] == {"enabled": True, "host": "own"}
    twice = "base: &base {port: 1}\nmetrics:\n  <<: *base\n  port: 2\n  port: 3\n"
    with pytest.raises(ConfigFileError, match="duplicate key 'port' \\(first given at line 4\\)"):
        load_yaml(write(tmp_path, twice))


def test_key_lines_say_where_each_kept_key_was_written(tmp_path: Path) -> None:
    """Keys at any depth and list items have their line; a merged key, the line it kept."""
    text = (
        "base: &base {port: 1, host: shared}\n"  # 1
        "# a comment\n"  # 2
        "metrics:\n"  # 3
        "  <<: *base\n"  # 4
        "  port: 2\n"  # 5
        "hosts:\n"  # 6
        "  - a\n"  # 7
        "  - {name: b}\n"  # 8
    )
    data, lines = load_yaml_with_lines(write(tmp_path, text))
    assert data["metrics"] == {"port": 2, "host": "shared"}
    assert lines[("metrics",)] == 3 and lines[("metrics", "port")] == 5
    assert lines[("metrics", "host")] == 1  # written in the anchored block
    assert (lines[("hosts", "0")], lines[("hosts", "1", "name")]) == (7, 8)
    assert load_yaml_with_lines(write(tmp_path, "")) == ({}, {})


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    """Collections nested hundreds deep are a one-line error, not a RecursionError."""
    path = write(tmp_path, "interval: " + "[" * 900 + "]" * 900 + "\n")
    with pytest.raises(ConfigFileError, match="nested too deeply"):
        load_yaml(path)


def test_numbers_from_the_environment_are_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A number read from ${VAR} (a PIN, say) is marked too, and still a number."""
    monkeypatch.setenv("PIN", "12345678")
    monkeypatch.setenv("RATIO", "0.5")
    data = load_yaml(write(tmp_path, "pin: ${PIN}\nratio: ${RATIO}\nport: 80\n"))
    assert isinstance(data["pin"], IntFromEnvironment) and data["pin"] == 12345678
    assert isinstance(data["ratio"], FloatFromEnvironment) and data["ratio"] == 0.5
    assert type(data["port"]) is int
