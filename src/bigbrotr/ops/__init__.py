"""The operations kit: alert rules, their tests, a dashboard, and Prometheus configs.

The rules, their ``promtool test rules`` file and the Grafana dashboard are
package data beside this module, written for the scrape job ``bigbrotr``;
``packaged`` returns one with another job name put in. The scrape config and
the ``file_sd`` target file are made from the targets given. Everything here
is pure (text in, text out); ``bigbrotr export`` prints it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib.resources import files

import yaml

__all__ = ["ARTIFACTS", "DEFAULT_JOB", "file_sd", "packaged", "parse_target", "scrape_config"]

#: The scrape job the packaged files select.
DEFAULT_JOB = "bigbrotr"
#: ``bigbrotr export`` name -> packaged file.
ARTIFACTS = {
    "rules": "bigbrotr.rules.yml",
    "rules-tests": "bigbrotr.rules.test.yml",
    "dashboard": "dashboard.json",
}
#: What a job name may hold here: it is put into PromQL and YAML as is.
_JOB = re.compile(r"[A-Za-z0-9_.:-]+")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TARGET = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")
_INTERVAL = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")


def _check_job(job: str) -> str:
    if not _JOB.fullmatch(job):
        raise ValueError(f"job {job!r}: use letters, digits and _ . : - only")
    return job


def packaged(artifact: str, *, job: str = DEFAULT_JOB) -> str:
    """The text of a packaged file (``ARTIFACTS``), selecting scrape job ``job``.

    Raises:
        KeyError: If ``artifact`` is not one of ``ARTIFACTS``.
        ValueError: If ``job`` holds characters PromQL or YAML would need quoted.
    """
    text = files(__name__).joinpath(ARTIFACTS[artifact]).read_text(encoding="utf-8")
    if _check_job(job) == DEFAULT_JOB:
        return text
    # The job appears as a PromQL matcher, a label in the tests, a Grafana variable's
    # value, and in the tests' expected annotations.
    for before, after in (
        (f'job="{DEFAULT_JOB}"', f'job="{job}"'),
        (f'job: "{DEFAULT_JOB}"', f'job: "{job}"'),
        (f'"query": "{DEFAULT_JOB}"', f'"query": "{job}"'),
        (f"scraped {DEFAULT_JOB} at", f"scraped {job} at"),
    ):
        text = text.replace(before, after)
    return text


def parse_target(target: str) -> str:
    """Check a ``HOST:PORT`` scrape target (``[::1]:9100`` for IPv6) and return it.

    Raises:
        ValueError: If it is not ``HOST:PORT`` with a port from 1 to 65535.
    """
    found = _TARGET.fullmatch(target)
    if not found or not 0 < int(found["port"]) < 65536:
        raise ValueError(f"target {target!r}: expected HOST:PORT, such as 127.0.0.1:9100")
    return target


def _label(pair: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    if not sep or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise ValueError(
            f"label {pair!r}: expected NAME=VALUE, NAME a Prometheus label name"
            " (letters, digits, _; not starting with __)"
        )
    return name, value


def file_sd(targets: Iterable[str], labels: Iterable[str] = ()) -> str:
    """A ``file_sd_configs`` target file (JSON): the targets, with ``NAME=VALUE`` labels.

    Raises:
        ValueError: If a target or label is malformed, or no target is given.
    """
    checked = [parse_target(t) for t in targets]
    if not checked:
        raise ValueError("give at least one --target HOST:PORT")
    group: dict[str, object] = {"targets": checked}
    if pairs := dict(_label(pair) for pair in labels):
        group["labels"] = pairs
    return json.dumps([group], indent=2) + "\n"


def scrape_config(
    targets: Iterable[str] = (),
    *,
    job: str = DEFAULT_JOB,
    metrics_path: str = "/metrics",
    scrape_interval: str = "15s",
    file_sd_files: Iterable[str] = (),
    rule_files: Iterable[str] = (),
) -> str:
    """A ``prometheus.yml`` scraping bigbrotr services, as ``promtool check config`` wants it.

    Args:
        targets: ``HOST:PORT`` of each service (static targets).
        job: The job name (the packaged rules and dashboard select ``bigbrotr``).
        metrics_path: ``metrics.path`` of the services.
        scrape_interval: How often to scrape, as Prometheus writes durations.
        file_sd_files: Target files (``bigbrotr export file-sd``) read instead of,
            or beside, static targets; Prometheus re-reads them when they change.
        rule_files: Rule files to evaluate (``bigbrotr export rules``).

    Raises:
        ValueError: If a value is malformed, or there is neither a target nor a file.
    """
    static = [parse_target(t) for t in targets]
    sd_files = list(file_sd_files)
    if not static and not sd_files:
        raise ValueError("give at least one --target HOST:PORT or --file-sd FILE")
    if not _INTERVAL.fullmatch(scrape_interval):
        raise ValueError(f"scrape interval {scrape_interval!r}: expected a duration such as 15s")
    if not metrics_path.startswith("/"):
        raise ValueError(f"metrics path {metrics_path!r}: must start with /")
    scrape: dict[str, object] = {
        "job_name": _check_job(job),
        "metrics_path": metrics_path,
        "scrape_interval": scrape_interval,
    }
    if static:
        scrape["static_configs"] = [{"targets": static}]
    if sd_files:
        scrape["file_sd_configs"] = [{"files": sd_files}]
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval}
    }
    if rules := list(rule_files):
        config["rule_files"] = rules
    config["scrape_configs"] = [scrape]
    header = "# Prometheus configuration for bigbrotr services (bigbrotr export scrape-config).\n"
    return header + yaml.safe_dump(config, sort_keys=False)
