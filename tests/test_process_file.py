"""``bigbrotr.process_file``: several services, their configs, one endpoint; one-line mistakes."""

from pathlib import Path

import pytest

from bigbrotr.cli import main
from bigbrotr.core.service_group import ServiceGroup
from bigbrotr.process import UsageError
from bigbrotr.process_file import load_process
from bigbrotr.services.demo import DemoConfig


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


JOBS = """\
metrics:
  enabled: true
  port: 0
  max_names: 200
services:
  eu:
    target: demo
    config: eu.yaml
  us:
    target: bigbrotr.services.demo:DemoService
    config: {interval: 30, failure_rate: 0.5, metrics: {max_names: 70}}
  nightly:
    target: demo
    config: {schedule: "0 3 * * *", timezone: Europe/Berlin}
"""


def test_each_service_gets_its_config_the_process_endpoint_and_its_name(tmp_path: Path) -> None:
    """A file beside the process file or inline; one class twice; max_names its own."""
    write(tmp_path, "eu.yaml", "interval: 5\n")
    process = load_process(write(tmp_path, "jobs.yaml", JOBS))
    assert [name for name, _, _ in process.services] == ["eu", "us", "nightly"]
    configs = {name: config for name, _, config in process.services}
    assert all(isinstance(config, DemoConfig) for config in configs.values())
    assert (configs["eu"].interval, configs["us"].interval) == (5, 30)
    assert configs["nightly"].cycle_schedule().text == "0 3 * * * (Europe/Berlin)"
    assert all(config.metrics.enabled and config.metrics.port == 0 for config in configs.values())
    assert [configs[name].metrics.max_names for name in ("eu", "us")] == [200, 70]
    group = ServiceGroup(process.build())
    assert [service.SERVICE_NAME for service in group.services] == ["eu", "us", "nightly"]
    assert all(type(service).SERVICE_NAME == "demo" for service in group.services)


@pytest.mark.parametrize(
    ("jobs", "own", "expected"),
    [
        (JOBS, "interval: 5\nmetrics:\n  port: 9100\n",
         "eu.yaml: field 'metrics.port': one endpoint serves every service, so it is set in"
         " the metrics: block of {jobs}; a service's own metrics: sets only max_names"),
        (JOBS.replace("{max_names: 70}", "{max_names: 70, host: 0.0.0.0}"), "",
         "jobs.yaml: field 'services.us.config.metrics.host': one endpoint serves every"),
        (JOBS, "intervall: 5\n",
         "eu.yaml: unknown field 'intervall' at line 1 (did you mean 'interval'?)"),
        (JOBS.replace("failure_rate: 0.5", "failure_rat: 0.5"), "",
         "jobs.yaml: unknown field 'services.us.config.failure_rat' at line 11"
         " (did you mean 'services.us.config.failure_rate'?)"),
        (JOBS.replace("schedule:", "interval: 60, schedule:"), "",
         "jobs.yaml: field 'services.nightly.config.schedule': give interval or schedule"),
        (JOBS.replace("target: demo\n    config: eu", "target: nowhere:Job\n    config: eu"), "",
         "jobs.yaml: field 'services.eu.target': cannot import module 'nowhere'"),
        (JOBS.replace("  eu:", "  'e u':"), "",
         "jobs.yaml: field 'services.e u': a service name is 1 to 64 letters, digits"),
        (JOBS.replace("config: eu.yaml", "config: missing.yaml"), "",
         "config file not found: {dir}/missing.yaml"),
        (JOBS.replace("  port: 0", "  prot: 0"), "",
         "jobs.yaml: unknown field 'metrics.prot' at line 3 (did you mean 'metrics.port'?)"),
        ("metrics: {enabled: true}\nservices: {}\n", "",
         "jobs.yaml: field 'services': Dictionary should have at least 1 item"),
        (JOBS.replace("  us:\n", "  eu:\n"), "",
         "jobs.yaml:9: duplicate key 'eu' (first given at line 6)"),
    ],
    ids=["service file sets the port", "inline sets the host", "unknown key in a file",
         "unknown key inline", "interval and schedule", "bad target", "bad name",
         "missing service file", "unknown process key", "no services", "a name twice"],
)  # fmt: skip
def test_a_mistake_is_one_line_naming_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str, own: str, expected: str
) -> None:
    """`check` and `run` exit 2 with one line; the endpoint is the process's to set."""
    write(tmp_path, "eu.yaml", own)
    path = write(tmp_path, "jobs.yaml", jobs)
    wanted = expected.format(jobs=path, dir=tmp_path)
    with pytest.raises(UsageError) as info:
        load_process(path)
    assert wanted in str(info.value), str(info.value)
    for command in ("check", "run"):
        assert main([command, "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and wanted in err, err


def test_a_target_and_a_process_file_or_neither_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each says what to give instead; a service config is not a process file."""
    write(tmp_path, "eu.yaml", "interval: 5\n")
    jobs = write(tmp_path, "jobs.yaml", JOBS)
    single = write(tmp_path, "single.yaml", "interval: 5\n")
    cases = [
        (["run", "demo", "--config", str(jobs)], "is a process file (services:)"),
        (["check"], "give a TARGET, or --config FILE with services: (a process file)"),
        (["run", "--config", str(single)], "not a process file (it has no services:)"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_check_prints_each_service_resolved_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint once, each service's own settings, and when each would first run."""
    monkeypatch.setenv("GATEWAY_URL", "http://user:hunter2@gateway:9091")
    write(tmp_path, "eu.yaml", "interval: 5\n")
    jobs = JOBS.replace(
        "  max_names: 200\n",
        "  max_names: 200\n  pushgateway: {url: '${GATEWAY_URL}', job: jobs}\n",
    )
    assert main(["check", "--config", str(write(tmp_path, "jobs.yaml", jobs))]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "url: http://user:********@gateway:9091" in out
    assert out.count("port: 0") == 1  # the endpoint, once
    lines = out.splitlines()
    assert lines[-3:-1] == [
        "# eu: every 5 s: the first cycle at start",
        "# us: every 30 s: the first cycle at start",
    ]
    assert lines[-1].startswith("# nightly: 0 3 * * * (Europe/Berlin): started now, the first")
