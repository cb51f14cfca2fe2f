"""bigbrotr: long-lived async services with first-class Prometheus observability."""

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("bigbrotr")
