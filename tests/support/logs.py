"""The type of the ``captured_logs`` fixture."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager

#: ``with captured_logs(service="logtest", level="DEBUG", fmt="json") as stream:``
CapturedLogs = Callable[..., AbstractContextManager[io.StringIO]]
