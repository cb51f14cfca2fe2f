"""The status page at ``/``: a snapshot of a service's state in, JSON and HTML out.

Pure: no clock, no I/O. The service takes the snapshot (``BaseService.status``);
the server sends ``as_json`` at ``/status.json`` and ``page`` at ``/``.

The page is for people, so it is one self-contained document: its style and
script are inline, it loads nothing from anywhere (``CONTENT_SECURITY_POLICY``
forbids it, with hashes for the two inline blocks), and it works offline. It
refreshes itself by fetching itself and swapping its ``<main>``, so there is
one renderer, this module, and without JavaScript it is still complete.
Everything it shows from the service is escaped: an exception message is user
data.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from bigbrotr.core._status_chart import CHART_HEIGHT, chart, scale_y, seconds, utc
from bigbrotr.core.health import HealthSnapshot, Verdict, liveness, readiness
from bigbrotr.core.history import HISTORY, CycleRecord, LastError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "HISTORY",
    "CycleRecord",
    "LastError",
    "StatusSnapshot",
    "as_json",
    "page",
    "state",
]

#: How often (seconds) the page refreshes itself.
REFRESH_SECONDS = 5


@dataclass(frozen=True)
class StatusSnapshot:
    """What the page shows, taken at one moment.

    Attributes:
        service: ``SERVICE_NAME``.
        version: The service's own version ("" when it declares none).
        bigbrotr_version: The runtime's version.
        now: Unix time of the snapshot.
        health: The same snapshot ``/readyz`` judges.
        cycles_succeeded: Successful cycles since start.
        cycles_failed: Failed cycles since start.
        interval: Seconds between cycle starts (for a cron schedule, the
            longest gap between planned starts).
        last_error: The latest failure, or None.
        recent: The last ``HISTORY`` cycles, oldest first.
        loop_lag: The event loop's latest lag in seconds, or None without a
            watchdog.
        schedule: The schedule in words (``every 60 s``, ``0 3 * * *
            (Europe/Berlin)``); "" when not known.
        next_start: Unix time the next cycle is planned to start (jitter
            included), or None before it is planned.
    """

    service: str
    version: str
    bigbrotr_version: str
    now: float
    health: HealthSnapshot
    cycles_succeeded: int
    cycles_failed: int
    interval: float
    last_error: LastError | None
    recent: tuple[CycleRecord, ...]
    loop_lag: float | None
    schedule: str = ""
    next_start: float | None = None


#: The page's words for each state (the JSON keeps the token).
_STATE_WORDS = {
    "ready": "ready",
    "degraded": "degraded",
    "not_ready": "not ready",
    "not_alive": "not alive",
    "stopping": "stopping",
}


def state(snapshot: StatusSnapshot, verdict: Verdict | None = None) -> str:
    """One word for the service's state that never contradicts ``/livez`` or ``/readyz``.

    ``not_alive`` when liveness fails (the loop is blocked); else ``stopping``
    once shutdown was requested; else ``not_ready`` when any other readiness
    check fails; else ``degraded`` when the last cycle failed (still ready:
    one failure is not a verdict until the streak reaches its limit); else
    ``ready``.

    Args:
        snapshot: The state to judge.
        verdict: ``readiness(snapshot.health)``, when the caller has it.
    """
    health = snapshot.health
    if not liveness(health).ok:
        return "not_alive"
    if health.shutting_down:
        return "stopping"
    verdict = verdict if verdict is not None else readiness(health)
    if not verdict.ok:
        return "not_ready"
    return "degraded" if health.consecutive_failures else "ready"


def _why(snapshot: StatusSnapshot, current: str, verdict: Verdict) -> str:
    """The sentence under the badge: which checks fail, or what keeps it short of ready."""
    health = snapshot.health
    if current in ("not_alive", "not_ready", "stopping"):
        probe, failed = (
            ("/livez", liveness(health)) if current == "not_alive" else ("/readyz", verdict)
        )
        return f"{probe} fails: " + "; ".join(
            f"{check.name}: {check.reason}" for check in failed.checks if not check.ok
        )
    if current == "degraded":
        streak, limit = health.consecutive_failures, health.max_consecutive_failures
        cycles = "the last cycle" if streak == 1 else f"the last {streak} cycles"
        until = f"; not ready at {limit} in a row" if limit else ""
        return f"still ready: {cycles} failed{until}"
    return "every liveness and readiness check passes"


def _since_success(snapshot: StatusSnapshot) -> float | None:
    health = snapshot.health
    return None if health.last_success_at is None else health.now - health.last_success_at


def as_json(snapshot: StatusSnapshot | Sequence[StatusSnapshot]) -> dict[str, Any]:
    """The snapshot for machines (``/status.json``); times are Unix seconds.

    Given several services' snapshots: ``services``, one entry each, with
    ``alive`` and ``ready`` true only when they are for every service.
    """
    if not isinstance(snapshot, StatusSnapshot):
        each = [as_json(one) for one in snapshot]
        return {
            "alive": all(one["alive"] for one in each),
            "ready": all(one["ready"] for one in each),
            "services": each,
        }
    verdict = readiness(snapshot.health)
    error = snapshot.last_error
    return {
        "service": snapshot.service,
        "version": snapshot.version,
        "bigbrotr_version": snapshot.bigbrotr_version,
        "generated_at": snapshot.now,
        "state": state(snapshot, verdict),
        "alive": liveness(snapshot.health).ok,
        "ready": verdict.ok,
        "checks": [{"name": c.name, "ok": c.ok, "reason": c.reason} for c in verdict.checks],
        "cycles_succeeded": snapshot.cycles_succeeded,
        "cycles_failed": snapshot.cycles_failed,
        "consecutive_failures": snapshot.health.consecutive_failures,
        "max_consecutive_failures": snapshot.health.max_consecutive_failures,
        "seconds_since_last_success": _since_success(snapshot),
        "interval_seconds": snapshot.interval,
        "schedule": snapshot.schedule,
        "next_cycle_timestamp": snapshot.next_start,
        "loop_lag_seconds": snapshot.loop_lag,
        "last_error": None
        if error is None
        else {"type": error.type, "message": error.message, "at": error.at},
        "recent_cycles": [
            {"ended_at": c.ended_at, "duration_seconds": c.duration, "ok": c.ok, "error": c.error}
            for c in snapshot.recent
        ],
    }


def _schedule(snapshot: StatusSnapshot) -> str:
    return snapshot.schedule or f"every {seconds(snapshot.interval)}"


def _next_start(snapshot: StatusSnapshot) -> str:
    """``in 4 min 10 s (03:00:00 UTC)``; ``now`` once due; ``not planned`` before."""
    if snapshot.next_start is None:
        return "not planned"
    left = snapshot.next_start - snapshot.now
    return "now" if left <= 0 else f"in {seconds(left)} ({utc(snapshot.next_start)})"


def _tile(label: str, value: str, *, name: str, bad: bool = False) -> str:
    css = "tile bad" if bad else "tile"
    return (
        f'<div class="{css}" data-field="{name}"><div class="label">{label}</div>'
        f'<div class="value">{value}</div></div>'
    )


def _main(snapshot: StatusSnapshot) -> str:
    """The part of the page that changes (swapped in place on each refresh)."""
    current, body = _service(snapshot)
    updated = f'<p class="muted">Updated {utc(snapshot.now)}.</p>'
    return f'<main data-state="{current}">{body}{updated}</main>'


def _service(snapshot: StatusSnapshot) -> tuple[str, str]:
    """One service's state, and its part of the page: badge, tiles, chart, checks, error."""
    health = snapshot.health
    verdict = readiness(health)
    current = state(snapshot, verdict)
    since = _since_success(snapshot)
    streak = health.consecutive_failures
    limit = health.max_consecutive_failures
    tiles = [
        _tile("Cycles succeeded", f"{snapshot.cycles_succeeded}", name="succeeded"),
        _tile("Cycles failed", f"{snapshot.cycles_failed}", name="failed"),
        _tile(
            "Failure streak",
            f"{streak} / {limit}" if limit else f"{streak}",
            name="streak",
            bad=streak > 0,
        ),
        _tile(
            "Since last success",
            "never" if since is None else f"{seconds(since)} ago",
            name="since-success",
        ),
        _tile("Schedule", escape(_schedule(snapshot)), name="schedule"),
        _tile("Next cycle", _next_start(snapshot), name="next-start"),
        _tile(
            "Event loop lag",
            "not watched" if snapshot.loop_lag is None else seconds(snapshot.loop_lag),
            name="loop-lag",
            bad=snapshot.loop_lag is not None and snapshot.loop_lag > health.loop_block_threshold,
        ),
    ]
    checks = "".join(
        f'<li class="{"ok" if c.ok else "fail"}">{escape(c.name)}'
        + ("" if c.ok else f": {escape(c.reason)}")
        + "</li>"
        for c in verdict.checks
    )
    error = snapshot.last_error
    if error is None:
        last_error = '<p class="muted" data-field="last-error">No cycle has failed.</p>'
    else:
        last_error = (
            f'<div class="error" data-field="last-error"><div><strong>{escape(error.type)}</strong>'
            f" at {utc(error.at)} ({seconds(max(0.0, snapshot.now - error.at))} ago)</div>"
            f"<pre>{escape(error.message)}</pre></div>"
        )
    return current, (
        f'<p class="verdict"><span class="state {current}" data-field="state">'
        f"{_STATE_WORDS[current]}</span>"
        f' <span class="muted" data-field="why">{escape(_why(snapshot, current, verdict))}</span>'
        "</p>"
        f'<section class="tiles">{"".join(tiles)}</section>'
        f"<section><h2>Recent cycles</h2>{chart(snapshot.recent)}</section>"
        f'<section><h2>Readiness</h2><ul class="checks">{checks}</ul></section>'
        f"<section><h2>Last error</h2>{last_error}</section>"
    )


_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1rem 1.5rem;
color:#1d2430;background:#f6f7f9}
header{display:flex;align-items:baseline;gap:1rem;flex-wrap:wrap}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
h2.service{font-size:1.3rem;margin-top:2rem;border-top:1px solid #dde1e7;padding-top:1rem}
.muted{color:#5b6474;font-size:.9rem}
.verdict{margin:.4rem 0}
.state{display:inline-block;margin-right:.4rem;padding:.15rem .7rem;border-radius:1rem;
font-weight:600;text-transform:uppercase;letter-spacing:.04em;color:#fff}
.state.ready{background:#1f8a4c}.state.degraded{background:#9a6700}
.state.not_ready{background:#c0392b}.state.not_alive{background:#7b1e1e}
.state.stopping{background:#5b6474}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:.6rem}
.tile{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.5rem .7rem}
.tile.bad{border-color:#c0392b}.tile.bad .value{color:#c0392b}
.label{font-size:.8rem;color:#5b6474}.value{font-size:1.25rem;font-weight:600}
.plot{display:flex;gap:.4rem;align-items:flex-start}
.scale{position:relative;flex:0 0 5.5rem;margin-top:1px;font-size:.75rem;color:#5b6474;
text-align:right}
.scale span{position:absolute;right:0;transform:translateY(-50%);white-space:nowrap}
.chart{flex:1;min-width:0;background:#fff;border:1px solid #dde1e7;border-radius:6px}
.grid{stroke:#dde1e7;stroke-dasharray:4 4;vector-effect:non-scaling-stroke}
rect.ok,.key.ok{fill:#1f8a4c;background:#1f8a4c}rect.fail,.key.fail{fill:#c0392b;background:#c0392b}
.key{display:inline-block;width:.8em;height:.8em;margin-left:.6em}
.checks{list-style:none;padding:0;margin:0}.checks li::before{content:"\\2713  ";color:#1f8a4c}
.checks li.fail::before{content:"\\2717  ";color:#c0392b}
.error{background:#fff;border:1px solid #c0392b;border-radius:6px;padding:.5rem .7rem}
.error pre{white-space:pre-wrap;word-break:break-word;margin:.4rem 0 0}
nav a{margin-right:1rem}.offline{display:none;color:#c0392b;font-weight:600}
body.stale .offline{display:inline}body.stale main{opacity:.55}
"""
# The chart's geometry, from the numbers _chart draws with: the scale's labels sit on its lines.
_STYLE += (
    f".chart,.scale{{height:{CHART_HEIGHT}px}}"
    f".scale .top{{top:{scale_y(1, 1):g}px}}.scale .half{{top:{scale_y(1, 2):g}px}}"
    f".scale .zero{{top:{CHART_HEIGHT}px}}\n"
)

_SCRIPT = f"""
(function () {{
  var every = {REFRESH_SECONDS * 1000}, refreshes = 0;
  function refresh() {{
    fetch(location.pathname, {{cache: "no-store"}})
      .then(function (r) {{ if (!r.ok) throw new Error(r.status); return r.text(); }})
      .then(function (text) {{
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        document.querySelector("main").replaceWith(fresh);
        document.body.dataset.refreshes = String(++refreshes);
        document.body.classList.remove("stale");
      }})
      .catch(function () {{ document.body.classList.add("stale"); }})
      .finally(function () {{ setTimeout(refresh, every); }});
  }}
  setTimeout(refresh, every);
}})();
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


#: Only the page's own inline style and script run; it fetches only itself.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src '{_sha256(_STYLE)}'; script-src '{_sha256(_SCRIPT)}';"
    " connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)


def page(snapshot: StatusSnapshot | Sequence[StatusSnapshot], *, metrics_path: str) -> str:
    """The whole HTML page; ``metrics_path`` is where the scrape endpoint is.

    Given several services' snapshots (a process file), a section per service.
    """
    if not isinstance(snapshot, StatusSnapshot):
        return _page_of_each(tuple(snapshot), metrics_path)
    name = escape(snapshot.service)
    version = f" {escape(snapshot.version)}" if snapshot.version else ""
    title = f'<h1>{name}</h1><span class="muted">version{version or " unknown"}'
    return _page(name, title, snapshot.bigbrotr_version, _main(snapshot), metrics_path)


def _page_of_each(snapshots: tuple[StatusSnapshot, ...], metrics_path: str) -> str:
    sections, states = [], []
    for snapshot in snapshots:
        current, body = _service(snapshot)
        states.append(current)
        version = f" {escape(snapshot.version)}" if snapshot.version else ""
        sections.append(
            f'<section class="service" data-service="{escape(snapshot.service)}">'
            f'<h2 class="service">{escape(snapshot.service)}'
            f' <span class="muted">{version or " unknown"}</span></h2>{body}</section>'
        )
    now = max((snapshot.now for snapshot in snapshots), default=0.0)
    worst = min(states, key=_SEVERITY.index, default="ready")
    main = (
        f'<main data-state="{worst}">{"".join(sections)}'
        f'<p class="muted">Updated {utc(now)}.</p></main>'
    )
    title = f'<h1>{len(snapshots)} services</h1><span class="muted">'
    bigbrotr = snapshots[0].bigbrotr_version if snapshots else ""
    return _page(f"{len(snapshots)} services", title, bigbrotr, main, metrics_path)


#: The states from worst to best: a process with several services shows its worst.
_SEVERITY = ("not_alive", "not_ready", "stopping", "degraded", "ready")


def _page(name: str, title: str, bigbrotr: str, main: str, metrics_path: str) -> str:
    links = [
        (metrics_path, "metrics"),
        ("/healthz?verbose", "healthz"),
        ("/readyz?verbose", "readyz"),
        ("/status.json", "status.json"),
    ]
    nav = "".join(f'<a href="{escape(href)}">{escape(text)}</a>' for href, text in links)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{name} · bigbrotr</title><style>{_STYLE}</style></head><body>"
        f"<header>{title} · bigbrotr {escape(bigbrotr)}</span>"
        '<span class="offline">not answering, showing the last state</span></header>'
        f"{main}<nav>{nav}</nav><script>{_SCRIPT}</script></body></html>"
    )
