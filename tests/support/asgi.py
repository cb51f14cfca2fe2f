"""The type of the ``serve`` fixture: an ASGI app served by a real uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeAlias

from bigbrotr.core.asgi import MetricsApp

#: ``async with serve(app) as base_url:``, uvicorn on a free loopback port.
Serve: TypeAlias = Callable[[MetricsApp], contextlib.AbstractAsyncContextManager[str]]
