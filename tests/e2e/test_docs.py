"""The guides run as written: every block of docs/testing.md and docs/writing-services.md."""

from pathlib import Path

import pytest

from tests.docblocks import Runner, blocks

REPO = Path(__file__).parents[2]


@pytest.mark.parametrize("guide", ["docs/testing.md", "docs/writing-services.md"])
def test_the_guide_runs_as_written(tmp_path: Path, guide: str) -> None:
    """Each block, in order, in an empty directory whose .venv has bigbrotr installed."""
    (tmp_path / ".venv").symlink_to(REPO / ".venv")  # the installed package, pytest included
    document = blocks((REPO / guide).read_text())
    runner = Runner(guide, tmp_path, {})
    done = runner.run(document)
    assert len(done) == len(document) >= 4
    assert not any(what.startswith("skipped") for what in done)
    # Each guide ends by running its tests with the pytest.ini it shows, which must not
    # warn (pytest-asyncio prints a PytestDeprecationWarning at start-up when
    # asyncio_default_fixture_loop_scope is unset).
    assert " passed in " in runner.last_output
    assert "warning" not in (runner.last_errors + runner.last_output).lower()
