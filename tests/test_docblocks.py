"""The runner of the documents' code blocks can fail: wrong output, failing commands."""

from pathlib import Path

import pytest

from tests.docblocks import Runner, blocks, matches


def test_blocks_are_found_with_their_directive_and_indentation() -> None:
    """A fenced block, indented or not, comes with the comment above it."""
    doc = "x\n<!-- file: f.py -->\n```python\nprint(1)\n```\n- item\n\n"
    doc += "  <!-- yaml -->\n  ```yaml\n  a: 1\n  ```\n"
    found = [(b.lang, b.directive, b.body) for b in blocks(doc)]
    assert found == [("python", "file: f.py", "print(1)\n"), ("yaml", "yaml", "a: 1\n")]


def test_output_must_match_line_by_line_with_ellipsis() -> None:
    """Lines are compared exactly; ``...`` stands for any lines, no more."""
    assert matches("a 1\n...\nz\n", "a 1\nb\nc\nz\n")
    assert not matches("a 1\n", "a 10\n")
    assert not matches("a\n...\nz\n", "a\nb\n")


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("```sh\necho one\n```\n<!-- output -->\n```\ntwo\n```\n", "the output differs"),
        ("```sh\nfalse\n```\n", "exit 1"),
        ("```\nplain\n```\n", "needs a directive"),
        ("<!-- background: never -->\n```sh\ntrue\n```\n", "exited"),
    ],
)
def test_a_wrong_document_fails(tmp_path: Path, document: str, complaint: str) -> None:
    """Each kind of mistake in a document stops the run with a message saying which."""
    with pytest.raises(AssertionError, match=complaint):
        Runner("doc.md", tmp_path, {}).run(blocks(document))
