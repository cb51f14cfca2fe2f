import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import sample, scrape, wait_until

BIGBROTR = Path(sys.executable).parent / "bigbrotr"
SEED_NAMES_WITH_TYPE = {"service_gauge", "service_counter_total", "service_counter_created"}


def test_demo_prints_its_url_and_passes_promtool(tmp_path: Path) -> None:
    """`bigbrotr run demo` says where its metrics are; promtool flags only the seed's names."""
    log = tmp_path / "demo.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(BIGBROTR), "run", "demo"],
            env={"DEMO_METRICS_PORT": "0", "DEMO_INTERVAL": "0.2", "PATH": "/usr/bin:/bin"},
            stderr=err,
        )
    try:

        def url() -> str | None:
            found = re.search(r"serving metrics\s+.*url=(http://\S+)", log.read_text())
            return found.group(1) if found else None

        metrics_url = wait_until(url, what="the demo to print its metrics URL")
        assert metrics_url.startswith("http://127.0.0.1:")

        def scraped_after_a_cycle() -> str | None:
            text = scrape(metrics_url)
            done = sample(text, "service_counter_total", service="demo", name="cycles_success")
            failed = sample(text, "service_counter_total", service="demo", name="cycles_failed")
            return text if (done or 0) + (failed or 0) >= 1 else None

        text = wait_until(scraped_after_a_cycle, what="a demo cycle")
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        complaints = [line for line in check.stderr.splitlines() if line.strip()]
        flagged = {line.split()[0] for line in complaints}
        assert flagged <= SEED_NAMES_WITH_TYPE, complaints
        assert "service_gauge" in flagged
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
