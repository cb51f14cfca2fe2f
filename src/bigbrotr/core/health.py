"""Health verdicts: a snapshot of a service's state in, liveness and readiness out.

Pure: no clock, no I/O. The service takes the snapshot (``BaseService.health``),
the HTTP adapters call ``liveness`` or ``readiness`` and send ``Verdict.status``
with ``Verdict.text``: one line per check in ``verbose`` form, as Kubernetes'
own ``/healthz?verbose`` does, for people; machines rely on the status alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Check", "HealthSnapshot", "Verdict", "liveness", "of_each", "readiness"]


@dataclass(frozen=True)
class HealthSnapshot:
    """What the verdicts need to know, taken at one moment (monotonic seconds).

    Attributes:
        now: When the snapshot was taken.
        started_at: When the service started.
        loop_blocked_for: How long the event loop has been blocked now (0 when
            it runs), or None without a watchdog.
        loop_block_threshold: Blocked longer than this is not alive.
        consecutive_failures: The current failure streak.
        max_consecutive_failures: The streak that stops the service (0: never).
        last_success_at: When the last successful cycle ended, or None.
        cycle_started_at: When the cycle in progress started, or None.
        stale_after: Seconds without a successful cycle (or in one cycle)
            after which the service is not ready.
        shutting_down: Whether shutdown was requested.
    """

    now: float
    started_at: float
    loop_blocked_for: float | None
    loop_block_threshold: float
    consecutive_failures: int
    max_consecutive_failures: int
    last_success_at: float | None
    cycle_started_at: float | None
    stale_after: float
    shutting_down: bool


@dataclass(frozen=True)
class Check:
    """One named check: passed, or failed with a reason."""

    name: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Verdict:
    """The checks behind one endpoint, and what to answer."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def status(self) -> int:
        """200 when ok, else 503."""
        return 200 if self.ok else 503

    def text(self, verbose: bool) -> str:
        """``ok``/``failed`` or, verbose, ``[+]name ok`` / ``[-]name failed: reason`` lines."""
        if not verbose:
            return "ok\n" if self.ok else "failed\n"
        lines = [
            f"[+]{check.name} ok" if check.ok else f"[-]{check.name} failed: {check.reason}"
            for check in self.checks
        ]
        lines.append("check passed" if self.ok else "check failed")
        return "\n".join(lines) + "\n"


def _loop(snapshot: HealthSnapshot) -> Check:
    blocked = snapshot.loop_blocked_for
    if blocked is not None and blocked > snapshot.loop_block_threshold:
        return Check("event-loop", False, f"blocked for {blocked:.1f}s")
    return Check("event-loop", True)


def liveness(snapshot: HealthSnapshot) -> Verdict:
    """Alive while the event loop runs (not blocked past its threshold)."""
    return Verdict((Check("process", True), _loop(snapshot)))


def readiness(snapshot: HealthSnapshot) -> Verdict:
    """Ready while cycles succeed often enough and nothing is stuck or stopping."""
    s = snapshot
    checks = [_loop(s)]
    limit = s.max_consecutive_failures
    if limit and s.consecutive_failures >= limit:
        checks.append(Check("failures", False, f"{s.consecutive_failures} cycles failed in a row"))
    else:
        checks.append(Check("failures", True))
    since = s.last_success_at if s.last_success_at is not None else s.started_at
    if s.now - since > s.stale_after:
        what = (
            "last successful cycle" if s.last_success_at is not None else "start, no success yet,"
        )
        checks.append(
            Check("freshness", False, f"{what} {s.now - since:.0f}s ago (> {s.stale_after:.0f}s)")
        )
    else:
        checks.append(Check("freshness", True))
    running = s.now - s.cycle_started_at if s.cycle_started_at is not None else 0.0
    if running > s.stale_after:
        checks.append(Check("cycle", False, f"in progress for {running:.0f}s"))
    else:
        checks.append(Check("cycle", True))
    checks.append(
        Check("shutdown", False, "shutting down") if s.shutting_down else Check("shutdown", True)
    )
    return Verdict(tuple(checks))


def of_each(verdicts: Mapping[str, Verdict]) -> Verdict:
    """One verdict for several services: every service's checks, named ``service: check``.

    It passes only when every service's does, so ``/readyz`` of a process
    with several services is 200 only when each one is ready.
    """
    return Verdict(
        tuple(
            Check(f"{service}: {check.name}", check.ok, check.reason)
            for service, verdict in verdicts.items()
            for check in verdict.checks
        )
    )
