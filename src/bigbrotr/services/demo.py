"""A demo service that simulates work, so every metric has something to show."""

from __future__ import annotations

import asyncio
import random

from pydantic import Field

from bigbrotr.core.base_service import BaseService, BaseServiceConfig

__all__ = ["DemoConfig", "DemoService"]


class DemoConfig(BaseServiceConfig):
    """Demo settings on top of the base ones.

    Attributes:
        failure_rate: Chance that a cycle raises, to exercise failure metrics.
        work_seconds_max: Upper bound of each cycle's simulated work.
    """

    interval: float = Field(default=3.0, gt=0, le=604_800)
    failure_rate: float = Field(default=0.1, ge=0, le=1)
    work_seconds_max: float = Field(default=1.0, ge=0, le=60)


class SimulatedFailure(RuntimeError):
    """Raised by the demo now and then, as a real service's bug would be."""


class DemoService(BaseService[DemoConfig]):
    """Sleeps a random while, updates a few custom metrics, sometimes fails."""

    SERVICE_NAME = "demo"
    SERVICE_VERSION = "1.0.0"
    CONFIG_CLASS = DemoConfig

    def __init__(self, config: DemoConfig | None = None) -> None:
        super().__init__(config)
        self._random = random.Random()

    async def cleanup(self) -> int:
        """Nothing to clean up in a simulation."""
        return 0

    async def run(self) -> None:
        """Simulate one unit of work."""
        await asyncio.sleep(self._random.uniform(0, self.config.work_seconds_max))
        if self._random.random() < self.config.failure_rate:
            raise SimulatedFailure(
                f"simulated failure, on purpose (failure_rate={self.config.failure_rate})"
            )
        items = self._random.randint(1, 50)
        self.inc_counter("items_processed", items)
        self.set_gauge("queue_depth", self._random.randint(0, 100))
        self.set_gauge("last_batch_size", items)
