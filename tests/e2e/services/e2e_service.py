"""A service for end-to-end tests, imported by the CLI from this directory.

Set E2E_IMPORT_PAUSE to a file path to make the import write that file and
pause, so a test can signal the process while it is still starting.
"""

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from bigbrotr.core.base_service import BaseService, BaseServiceConfig

if pause_marker := os.environ.get("E2E_IMPORT_PAUSE"):
    Path(pause_marker).touch()
    time.sleep(1.5)


POOL = ThreadPoolExecutor(thread_name_prefix="service-pool")


class E2EConfig(BaseServiceConfig):
    """What each cycle does, and where it leaves a mark."""

    mode: Literal["ok", "fail", "flaky", "slow", "thread", "block", "pool", "odd_name"] = "ok"
    marker_dir: str = ""
    fail_message: str = "always fails"


class E2EService(BaseService[E2EConfig]):
    """Succeeds, fails (always or every other cycle), hangs or blocks; marks each cycle."""

    SERVICE_NAME = "e2e"
    SERVICE_VERSION = "1.2.3"
    CONFIG_CLASS = E2EConfig
    cycles = 0

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        if self.config.marker_dir:  # tiny local file ops; blocking is fine in a test fake
            marker_dir = Path(self.config.marker_dir)
            (marker_dir / f"cycle-{len(list(marker_dir.glob('cycle-*')))}").touch()  # noqa: ASYNC240
        self.cycles += 1
        if self.config.mode == "fail" or (self.config.mode == "flaky" and self.cycles % 2):
            raise RuntimeError(self.config.fail_message)
        if self.config.mode == "slow":
            await asyncio.sleep(60)
        if self.config.mode == "thread":  # blocked where cancellation cannot reach
            await asyncio.to_thread(time.sleep, 60)
        if self.config.mode == "block":  # the bug this mode stands for: the loop stops
            time.sleep(60)  # noqa: ASYNC251
        if self.config.mode == "pool":  # a pool of the service's own, idle between uses
            POOL.submit(time.sleep, 0).result()
        if self.config.mode == "odd_name":  # a file name that is not UTF-8
            self.inc_counter(os.fsdecode(b"file_\xff"))
