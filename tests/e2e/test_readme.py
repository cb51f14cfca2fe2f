"""The README runs as written: every block, in order, in a new project's directory."""

import socket
import subprocess
from pathlib import Path

from tests.docblocks import Runner, blocks

REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    """`make dist`, then the README's blocks against the wheel installed in a new venv.

    Only the port differs: the README's 9100 becomes a free one, through the
    ``FETCHER_METRICS_PORT`` its YAML reads and in the curl command.
    """
    made = subprocess.run(["make", "dist"], cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    (wheel,) = (REPO / "dist").glob("bigbrotr-*.whl")
    port = str(free_port())
    readme = (REPO / "README.md").read_text().replace("127.0.0.1:9100", f"127.0.0.1:{port}")
    document = blocks(readme)
    runner = Runner("README.md", tmp_path, {"BIGBROTR": str(wheel), "FETCHER_METRICS_PORT": port})
    done = runner.run(document)
    assert done.count("output matched") == 4  # metrics; a schedule and its mistake; readyz
    assert done.count("ran the Python") == 2  # several services, the renderer; files run
    assert sum(what.startswith("started in the background") for what in done) == 3
