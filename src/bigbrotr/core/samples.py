"""Reading samples back out of exposition text: the one reader, for the runtime and tests.

``bigbrotr run --once`` reads the Pushgateway's page to keep a group's last
success; tests and the testing kit read scrapes. Both parse with
prometheus_client's parser, here.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["sample_value", "samples"]


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample in exposition text (text format or OpenMetrics): name, labels, value."""
    for family in text_string_to_metric_families(text.replace("# EOF\n", "")):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)


def sample_value(text: str, sample_name: str, /, **labels: str) -> float | None:
    """The value of the sample ``sample_name`` with these labels in exposition text, or None.

    Matches when every label given is equal (others may be present). Works on
    the text format and on OpenMetrics.
    """
    for name, found, value in samples(text):
        if name == sample_name and all(found.get(k) == v for k, v in labels.items()):
            return value
    return None
