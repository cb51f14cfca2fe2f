"""A service whose cycles follow a script, on the testing kit's fake clock."""

from __future__ import annotations

from collections.abc import Callable

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.clock import using_clock
from bigbrotr.testing import FakeClock

#: The ``unique_name`` fixture: ``unique_name(prefix="svc")``.
UniqueName = Callable[..., str]
#: The ``scripted`` fixture: ``scripted(name=None)``, a subclass with a unique SERVICE_NAME.
Scripted = Callable[..., type["ScriptedService"]]
#: The ``metrics_on`` fixture: ``metrics_on(**fields)``, metrics on a free port.
MetricsOn = Callable[..., BaseServiceConfig]


class ScriptedService(BaseService[BaseServiceConfig]):
    """A service whose cycles follow a script; each step is run() for one cycle.

    A step is a number (seconds the cycle takes on the fake clock) or an
    exception instance to raise. After the script ends, shutdown is requested.
    Waits advance the fake clock instead of sleeping. Take subclasses with a
    unique name from the ``scripted`` fixture: the metric singletons are shared.
    """

    SERVICE_NAME = "scripted"

    def __init__(
        self,
        config: BaseServiceConfig | None = None,
        script: list[float | BaseException] | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.fake_clock = clock or FakeClock()
        with using_clock(self.fake_clock):
            super().__init__(config)
        self.script = list(script or [])
        self.calls: list[str] = []
        self.cycle_starts: list[float] = []
        self.wall_starts: list[float] = []
        self.waits: list[float] = []

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.waits.append(timeout)
        return await super().wait(timeout)

    async def cleanup(self) -> int:
        self.calls.append("cleanup")
        self.cycle_starts.append(self.fake_clock())
        self.wall_starts.append(self.fake_clock.time())
        return 0

    async def run(self) -> None:
        self.calls.append("run")
        step = self.script.pop(0) if self.script else 0.0
        if not self.script:
            self.request_shutdown()
        if isinstance(step, BaseException):
            raise step
        self.fake_clock.advance(step)
