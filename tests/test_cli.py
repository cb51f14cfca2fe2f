import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bigbrotr import __version__
from bigbrotr.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"bigbrotr {__version__}"


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["check", "--help"], ["export", "--help"]]
)
def test_help_says_what_and_gives_an_example(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Every command's --help describes it and shows an example."""
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "example" in out
    assert "bigbrotr" in out


def test_export_prints_each_artifact(capsys: pytest.CaptureFixture[str]) -> None:
    """`export` prints rules, tests and dashboard (for a job), a file_sd file and a config."""
    code, out, _ = run_cli(capsys, "export", "rules", "--job", "fleet")
    assert code == 0 and 'up{job="fleet"} == 0' in out
    code, out, _ = run_cli(capsys, "export", "rules-tests")
    assert code == 0 and yaml.safe_load(out)["rule_files"] == ["bigbrotr.rules.yml"]
    code, out, _ = run_cli(capsys, "export", "dashboard")
    assert code == 0 and json.loads(out)["uid"] == "bigbrotr-services"
    code, out, _ = run_cli(capsys, "export", "file-sd", "--target", "a:9100", "--label", "env=x")
    assert code == 0 and json.loads(out) == [{"targets": ["a:9100"], "labels": {"env": "x"}}]
    code, out, _ = run_cli(
        capsys, "export", "scrape-config", "--target", "a:9100", "--target", "b:9100"
    )
    static = yaml.safe_load(out)["scrape_configs"][0]["static_configs"]
    assert code == 0 and static == [{"targets": ["a:9100", "b:9100"]}]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export"], "required: artifact"),
        (["export", "alerts"], "invalid choice: 'alerts'"),
        (["export", "file-sd", "--target", "localhost"], "expected HOST:PORT"),
        (["export", "file-sd", "--target", "a:1", "--label", "env"], "expected NAME=VALUE"),
        (["export", "scrape-config"], "give at least one --target"),
        (["export", "rules", "--job", "a b"], "job 'a b'"),
    ],
)
def test_export_mistakes_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """A wrong export request prints one line saying what was expected, and exits 2."""
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_check_prints_resolved_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check prints the config with defaults and environment filled in, and exits 0."""
    monkeypatch.setenv("CHECK_PORT", "9123")
    path = tmp_path / "demo.yaml"
    path.write_text("interval: 2\nmetrics:\n  enabled: true\n  port: ${CHECK_PORT}\n")
    code, out, err = run_cli(capsys, "check", "demo", "--config", str(path))
    assert (code, err) == (0, "")
    resolved = yaml.safe_load(out)
    assert resolved["interval"] == 2
    assert resolved["metrics"] == {
        "enabled": True,
        "port": 9123,
        "host": "127.0.0.1",
        "path": "/metrics",
        "max_requests_in_flight": 10,
        "render_timeout": 10.0,
        "max_names": 1000,
        "max_connections": 100,
        "idle_timeout": 15.0,
        "web_config_file": None,
        "unprotected_paths": [],
        "pushgateway": None,
    }
    assert resolved["max_consecutive_failures"] == 5


def test_check_bundled_demo_uses_its_shipped_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled demo's own YAML enables metrics on 127.0.0.1:8000."""
    code, out, _ = run_cli(capsys, "check", "demo")
    assert code == 0
    assert yaml.safe_load(out)["metrics"]["port"] == 8000


def test_check_reads_web_config_file_beside_the_yaml_from_any_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`web_config_file: web.yml` is the file next to the YAML, wherever `check` is run from."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "web.yml").write_text("http_server_config:\n  headers: {X-A: b}\n")
    config = tmp_path / "conf" / "svc.yaml"
    config.write_text("metrics:\n  enabled: true\n  web_config_file: web.yml\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "check", "demo", "--config", "conf/svc.yaml")
    assert (code, err) == (0, "")
    assert yaml.safe_load(out)["metrics"]["web_config_file"] == str(tmp_path / "conf" / "web.yml")


def test_check_names_the_line_and_the_closest_key_of_a_typo(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A misspelt key is one line with its line number and the key that was probably meant."""
    path = tmp_path / "bad.yaml"
    path.write_text("interval: 2\nmetrics:\n  enabled: true\n  prot: 9100\n")
    code, _, err = run_cli(capsys, "check", "demo", "--config", str(path))
    assert code == 2
    assert err == (
        f"bigbrotr: error: {path}: unknown field 'metrics.prot' at line 4"
        " (did you mean 'metrics.port'?)\n"
    )


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("metrics:\n  port: 80\n", r"bad\.yaml: field 'metrics\.port'"),
        ("interval: -1\n", r"bad\.yaml: field 'interval'"),
        ("colour: blue\n", r"bad\.yaml: unknown field 'colour'"),
        ("interval: [1\n", r"bad\.yaml:2: "),
        ("- a\n", r"bad\.yaml:1: top level must be a mapping"),
        ("1: 2\n", r"bad\.yaml: field '1': Keys should be strings"),
    ],
)
def test_check_invalid_config_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, yaml_text: str, expected: str
) -> None:
    """A bad config exits 2 with one line naming the file and field or line."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    code, out, err = run_cli(capsys, "check", "demo", "--config", str(path))
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert err.startswith("bigbrotr: error: ")
    assert re.search(expected, err), err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["check", "demo", "--config", "/no/such/file.yaml"], "config file not found"),
        (["check", "nosuchservice"], "must be 'package.module:ClassName'"),
        (["check", "no_such_module_xyz:Thing"], "cannot import module 'no_such_module_xyz'"),
        (["check", "bigbrotr.cli:main"], "is not a BaseService subclass"),
        (
            ["check", "bigbrotr.core.metrics:Missing"],
            "module 'bigbrotr.core.metrics' has no class 'Missing'",
        ),
        (
            ["check", "bigbrotr/services/demo.py:DemoService"],
            "use bigbrotr.services.demo:DemoService",
        ),
        (["check", ".relative:Thing"], "cannot import module '.relative'"),
        (["check", "bigbrotr.core.base_service:BaseService"], "cannot build BaseService"),
        (["run"], "give a TARGET, or --config FILE with services: (a process file)"),
        (["run", "demo", "--log-format", "xml"], "invalid choice: 'xml'"),
        (["run", "demo", "--port", "80"], "80 is not 0 or 1024-65535"),
        (["run", "demo", "--port", "http"], "'http' is not a port number"),
        (["run", "demo", "--once", "--port", "9000"], "a --once run serves no metrics"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """Bad targets, missing files and bad arguments print one line and exit 2."""
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_port_needs_metrics_on(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--port with metrics off in the config says so, naming the file, and exits 2."""
    config = tmp_path / "quiet.yaml"
    config.write_text("interval: 5\n")
    code, _, err = run_cli(capsys, "run", "demo", "--config", str(config), "--port", "9000")
    assert code == 2
    assert err.strip() == (
        f"bigbrotr: error: --port: metrics are off in {config}; set metrics.enabled: true"
    )


def test_config_that_is_not_utf8_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A config file in another encoding is a one-line error naming the file."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("interval: 5  # café\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "check", "demo", "--config", str(path))
    assert code == 2
    reason = "invalid continuation byte at byte 18"  # the é of café, in Latin-1
    assert err.strip() == f"bigbrotr: error: {path}: not UTF-8 text ({reason})"


@pytest.mark.parametrize("argv", [["--version"], ["check", "demo"], ["run"]])
def test_commands_that_do_not_run_leave_signals_alone(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """After check, --version or a usage error, SIGINT and SIGTERM have their defaults back."""
    run_cli(capsys, *argv)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("class Broken(:\n", "{path}:1: invalid syntax"),
        (
            "import os\nvalue = undefined_name\n",
            "{path}:2: NameError: name 'undefined_name' is not defined",
        ),
        (
            "raise RuntimeError('no database configured')\n",
            "{path}:1: RuntimeError: no database configured",
        ),
        ("import no_such_dependency_xyz\n", "{path}:1: No module named 'no_such_dependency_xyz'"),
        ("import json\njson.loads('{')\n", "{path}:2: JSONDecodeError: Expecting property name"),
    ],
    ids=["syntax error", "name error", "raises at import", "missing dependency", "library error"],
)
def test_a_module_that_fails_to_import_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    expected: str,
) -> None:
    """A user module that fails to import is one line naming file:line and the error, exit 2."""
    name = f"user_module_{abs(hash(source))}"
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_cli(capsys, "check", f"{name}:Service")
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected.format(path=path) in err


def test_check_fails_on_a_host_run_could_not_bind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Check resolves metrics.host as run would; an unknown name is one line, file and field."""
    path = tmp_path / "bad-host.yaml"
    path.write_text("metrics:\n  enabled: true\n  host: no-such-host.invalid\n")
    code, _, err = run_cli(capsys, "check", "demo", "--config", str(path))
    assert code == 2
    assert err.startswith(f"bigbrotr: error: {path}: field 'metrics.host': cannot resolve ")
    assert len(err.strip().splitlines()) == 1


def test_check_and_the_start_log_mask_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check prints secret-named fields and URL passwords masked, whatever their source."""
    (tmp_path / "secretive.py").write_text(
        "from bigbrotr.core.base_service import BaseService, BaseServiceConfig\n"
        "class Config(BaseServiceConfig):\n"
        "    api_token: str = ''\n"
        "    dsn: str = ''\n"
        "class Secretive(BaseService[Config]):\n"
        "    SERVICE_NAME = 'secretive'\n"
        "    CONFIG_CLASS = Config\n"
        "    async def cleanup(self): return 0\n"
        "    async def run(self): pass\n"
    )
    monkeypatch.setenv("API_TOKEN", "tok-from-env")
    config = tmp_path / "secretive.yaml"
    config.write_text("api_token: ${API_TOKEN}\ndsn: postgresql://app:pw123@db/main\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = run_cli(capsys, "check", "secretive:Secretive", "--config", str(config))
    assert code == 0
    resolved = yaml.safe_load(out)
    assert resolved["api_token"] == "********"
    assert resolved["dsn"] == "postgresql://app:********@db/main"
    assert "tok-from-env" not in out and "pw123" not in out
    run = subprocess.run(
        [sys.executable, "-m", "bigbrotr", "run", "secretive:Secretive", "--once",
         "--log-format", "json", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    started = [json.loads(line) for line in run.stderr.splitlines() if '"starting"' in line]
    assert started[0]["config"]["api_token"] == "********"
    assert "tok-from-env" not in run.stderr and "pw123" not in run.stderr


_LOADED = """
import sys
from bigbrotr.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("aiohttp", "pydantic", "bigbrotr.core.metrics") if m in sys.modules)
print(",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--version"], ["export", "rules"], ["export", "dashboard"]])
def test_light_commands_load_no_web_stack_and_register_no_metric(argv: list[str]) -> None:
    """--version and export import neither aiohttp nor pydantic, nor the runtime's metrics."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True, check=True
    )
    assert done.stderr.strip().splitlines()[-1:] in ([], [""])
    assert done.stdout  # the command did print its output


_WITH_DEPENDENCY = """
from bigbrotr.core.base_service import BaseService, BaseServiceConfig


class Config(BaseServiceConfig):
    greeting: str = "hello"


class Greeter(BaseService[Config]):
    SERVICE_NAME = "greeter"
    CONFIG_CLASS = Config

    def __init__(self, config: Config, out: list[str]) -> None:
        super().__init__(config)
        self.out = out

    async def run(self) -> None:
        self.out.append(self.config.greeting)
        print(self.config.greeting, flush=True)


def make(config: Config) -> Greeter:
    return Greeter(config, out=[])


def make_by_return(config) -> Greeter:
    return Greeter(config, out=[])


def make_nothing(config: Config) -> int:
    return 3


def unannotated(config):
    return Greeter(config, out=[])


def make_loose(config: BaseServiceConfig) -> Greeter:
    return Greeter(config, out=[])


async def make_async(config: Config) -> Greeter:
    return Greeter(config, out=[])


def make_broken(config: Config) -> Greeter:
    raise RuntimeError("database unreachable")
"""


@pytest.fixture
def greeter_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user module whose service takes a dependency, with factories; its name."""
    name = f"greeter_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(_WITH_DEPENDENCY)
    (tmp_path / "greeter.yaml").write_text("greeting: bonjour\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("factory", ["make", "make_by_return", "make_loose"])
def test_a_factory_target_gets_the_loaded_config(
    capsys: pytest.CaptureFixture[str], greeter_module: str, factory: str
) -> None:
    """module:function builds a service with dependencies; its config class is checked."""
    code, out, err = run_cli(
        capsys, "check", f"{greeter_module}:{factory}", "--config", "greeter.yaml"
    )
    assert (code, err) == (0, "")
    assert yaml.safe_load(out)["greeting"] == "bonjour"
    code, _, err = run_cli(capsys, "check", f"{greeter_module}:{factory}", "--config", "nope.yaml")
    assert code == 2 and "config file not found" in err


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("Greeter", "it takes dependencies: give a factory, module:function, that builds it"),
        ("make_nothing", "returned int, not a BaseService"),
        ("unannotated", "as a factory, annotate its config parameter (config: MyConfig)"),
        ("make_async", "is async: make it a plain function"),
    ],
)
def test_a_target_that_cannot_build_a_service_is_one_line(
    capsys: pytest.CaptureFixture[str], greeter_module: str, target: str, expected: str
) -> None:
    """A class needing dependencies, or a factory returning no service, says what to do."""
    code, _, err = run_cli(capsys, "check", f"{greeter_module}:{target}")
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_run_a_factory_once_and_without_config_warns_what_is_in_effect(
    greeter_module: str, tmp_path: Path
) -> None:
    """Run --once with a factory runs it; without --config, one WARNING names the defaults."""
    command = [sys.executable, "-m", "bigbrotr", "run", f"{greeter_module}:make", "--once"]
    with_config = subprocess.run(
        [*command, "--config", "greeter.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert with_config.returncode == 0, with_config.stderr
    assert with_config.stdout == "bonjour\n"
    assert "no --config" not in with_config.stderr
    defaults = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert defaults.returncode == 0, defaults.stderr
    assert defaults.stdout == "hello\n"
    warnings = [line for line in defaults.stderr.splitlines() if "no --config" in line]
    assert len(warnings) == 1, defaults.stderr
    assert "running on Config's defaults" in warnings[0]
    assert "interval_seconds=300.0" in warnings[0] and "metrics=off" in warnings[0]


def test_a_factory_that_fails_is_the_services_error_not_a_usage_error(
    capsys: pytest.CaptureFixture[str], greeter_module: str
) -> None:
    """A factory that raises (its database is down) is not reported as the user's mistake."""
    with pytest.raises(RuntimeError, match="database unreachable"):
        run_cli(capsys, "check", f"{greeter_module}:make_broken")


@pytest.mark.parametrize(
    ("web_config", "expected"),
    [
        ("{dir}", "{dir}: a directory, not a web config file"),
        ("/dev/zero", "/dev/zero: not a regular file"),
        ("{dir}/pipe", "{dir}/pipe: not a regular file"),
        ("cost31.yml", "field 'basic_auth_users.a': bcrypt cost 31 is over 15"),
    ],
    ids=["directory", "endless file", "pipe with no writer", "bcrypt cost 31"],
)
def test_a_web_config_that_could_hang_or_trace_back_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, web_config: str, expected: str
) -> None:
    """A directory, an endless file, a pipe, a cost that would hang: one line, exit 2, at once."""
    os.mkfifo(tmp_path / "pipe")  # before: open() waited for a writer, forever
    (tmp_path / "cost31.yml").write_text(f"basic_auth_users:\n  a: '$2b$31${'a' * 53}'\n")
    config = tmp_path / "svc.yaml"
    web = web_config.format(dir=tmp_path)
    config.write_text(f"metrics:\n  enabled: true\n  port: 0\n  web_config_file: {web}\n")
    code, _, err = run_cli(capsys, "check", "demo", "--config", str(config))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected.format(dir=tmp_path) in err
