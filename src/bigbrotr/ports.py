"""The one rule for a TCP port the metrics endpoint may bind (standard library only).

Shared by ``MetricsConfig.port`` and ``bigbrotr run --port``, which must agree,
and kept free of imports so the command line can check ``--port`` before it
loads anything heavy.
"""

from __future__ import annotations

__all__ = ["valid_port"]


def valid_port(port: int) -> bool:
    """Whether ``port`` may be bound: 0 picks a free one; below 1024 needs privileges."""
    return port == 0 or 1024 <= port <= 65535
