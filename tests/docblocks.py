"""Running a Markdown document's code blocks as written, in order, in one directory.

A block's meaning comes from an HTML comment on the line before its fence:

- ``<!-- file: NAME -->``: the block is written to ``NAME``.
- ``<!-- run -->`` (or no comment) on ``sh``: run with bash (``-e -o pipefail``); its stdout
  is kept for an ``output`` block that follows.
- ``<!-- background: TEXT -->`` on ``sh``: started in the background; the next
  block runs once ``TEXT`` appears in its output. It is stopped with SIGINT
  (Ctrl-C) when the next background block starts, or at the end, and must exit 0
  without a traceback.
- ``<!-- output -->``: the previous command's stdout, line by line; a ``...``
  line stands for any lines.
- ``<!-- yaml -->``: must parse as YAML (a snippet for another program).
- ``<!-- skip: WHY -->``: not run, for the reason given.

A ``python`` block without a ``file:`` runs as a script. Blocks indented in a
list item are found too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

_BLOCK = re.compile(
    r"(?:^[ \t]*<!--\s*(?P<directive>[^>]*?)\s*-->[ \t]*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>\w*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    """One fenced block and what its comment says to do with it."""

    line: int
    lang: str
    directive: str
    body: str


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of a document, in order."""
    found = []
    for match in _BLOCK.finditer(markdown):
        indent = match["indent"]
        body = "".join(
            line.removeprefix(indent) for line in match["body"].splitlines(keepends=True)
        )
        line = markdown.count("\n", 0, match.start("indent")) + 1
        found.append(Block(line, match["lang"], (match["directive"] or "").strip(), body))
    return found


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` has the lines of ``expected``, where a ``...`` line is any lines."""
    pattern = ""
    for line in expected.splitlines():
        pattern += r"(?:.*\n)*?" if line.strip() == "..." else re.escape(line.rstrip()) + r"\n"
    normal = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch(pattern, normal) is not None


class Runner:
    """Runs a document's blocks in ``directory`` with ``env``; fails on the first wrong one."""

    def __init__(self, name: str, directory: Path, env: dict[str, str]) -> None:
        self.name = name
        self.directory = directory
        self.env = {**os.environ, **env}
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.last_output = ""
        self.last_errors = ""  # the last command's stderr, for a caller's own assertions

    def run(self, document: list[Block]) -> list[str]:
        """Run every block; returns what each did (for the test's own assertions)."""
        done = []
        try:
            for block in document:
                done.append(self._one(block))
        finally:
            self._stop_background()
        return done

    def _where(self, block: Block) -> str:
        return f"{self.name}:{block.line}"

    def _one(self, block: Block) -> str:
        kind, _, argument = block.directive.partition(":")
        kind, argument = kind.strip(), argument.strip()
        if kind == "skip":
            assert argument, f"{self._where(block)}: say why a block is skipped"
            return f"skipped ({argument})"
        if kind == "file":
            (self.directory / argument).write_text(block.body)
            return f"wrote {argument}"
        if kind == "yaml":
            yaml.safe_load(block.body)
            return "parsed YAML"
        if kind == "output":
            assert matches(block.body, self.last_output), (
                f"{self._where(block)}: the output differs.\nexpected:\n{block.body}\n"
                f"actual:\n{self.last_output}"
            )
            return "output matched"
        if kind == "background":
            self._start_background(block, argument)
            return f"started in the background until {argument!r}"
        if block.lang == "python":
            script = self.directory / f"block_{block.line}.py"
            script.write_text(block.body)
            self._shell(block, f".venv/bin/python {script.name}")
            return "ran the Python"
        assert block.lang in ("sh", "bash") and kind in ("", "run"), (
            f"{self._where(block)}: a {block.lang or 'plain'} block needs a directive"
        )
        self._shell(block, block.body)
        return "ran the commands"

    def _shell(self, block: Block, script: str) -> None:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            timeout=240,
        )
        self.last_output = done.stdout.decode()
        self.last_errors = done.stderr.decode()
        assert done.returncode == 0, (
            f"{self._where(block)}: exit {done.returncode}\n{script}\n"
            f"stdout:\n{self.last_output}\nstderr:\n{self.last_errors}"
        )

    def _start_background(self, block: Block, ready: str) -> None:
        self._stop_background()  # as a reader would, with Ctrl-C
        log = self.directory / f"background_{block.line}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {block.body.strip()}"],
                cwd=self.directory,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.background.append((process, log))
        deadline = time.monotonic() + 30
        while ready not in log.read_text():
            assert process.poll() is None, f"{self._where(block)}: exited\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{self._where(block)}: no {ready!r}"
            time.sleep(0.05)

    def _stop_background(self) -> None:
        for process, log in self.background:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                code = process.wait(20)
            finally:
                if process.poll() is None:
                    process.kill()
            output = log.read_text()
            assert code == 0 and "Traceback" not in output, f"exit {code}:\n{output}"
        self.background.clear()
