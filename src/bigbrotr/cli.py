"""The ``bigbrotr`` command line: ``run``, ``check`` and ``export``.

Exit codes: 0 clean stop; 1 failure limit reached (or the ``--once`` cycle
failed); 2 usage or configuration error, printed as one line; 130 interrupted.

Only the standard library is imported at module level: ``main`` installs the
signal handlers first and loads the rest after, so start-up is covered.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bigbrotr import __version__
from bigbrotr.ports import valid_port
from bigbrotr.process import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ShutdownSignals, UsageError

if TYPE_CHECKING:  # imported when used: --version and export need no pydantic
    from bigbrotr.core.service_config import BaseServiceConfig
    from bigbrotr.process_file import Process

__all__ = ["main"]

_TARGET_HELP = (
    "a bundled service (demo), package.module:ClassName (a BaseService subclass), or "
    "package.module:function (a factory taking the loaded config, returning the service)"
)


_NO_TARGET = "; none with a process file (--config FILE with services:)"
_CONFIG_HELP = "YAML configuration file: the service's, or a process file (services:)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from bigbrotr.core.logger import LOG_FORMATS, LOG_LEVELS

    parser = _Parser(
        prog="bigbrotr",
        description="Run long-lived async services with Prometheus metrics.",
        epilog="example: bigbrotr run demo",
    )
    parser.add_argument("--version", action="version", version=f"bigbrotr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a service on its schedule",
        description=(
            "Run a service: serve its metrics (when enabled) and call its cycle every "
            "interval until SIGINT/SIGTERM (graceful; a second signal stops at once); "
            "SIGHUP re-reads metrics.web_config_file."
        ),
        epilog=(
            "examples:\n  bigbrotr run demo\n  bigbrotr run demo --port 8001\n"
            "  bigbrotr run myapp.jobs:Fetcher --config fetcher.yaml --log-format json\n"
            "  bigbrotr run --config jobs.yaml   (a process file: several services, one port)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("target", metavar="TARGET", nargs="?", help=_TARGET_HELP + _NO_TARGET)
    run.add_argument("--config", metavar="FILE", type=Path, help=_CONFIG_HELP)
    run.add_argument("--once", action="store_true", help="run one cycle and exit")
    run.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help="serve metrics on this port instead of metrics.port (0: any free port)",
    )
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    run.add_argument("--log-format", default="text", choices=LOG_FORMATS)
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check",
        help="validate a configuration and print it resolved",
        description=(
            "Validate TARGET's configuration and print it with defaults and "
            "environment variables resolved. Exits 0 if valid, 2 if not."
        ),
        epilog="example:\n  bigbrotr check myapp.jobs:Fetcher --config fetcher.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("target", metavar="TARGET", nargs="?", help=_TARGET_HELP + _NO_TARGET)
    check.add_argument("--config", metavar="FILE", type=Path, help=_CONFIG_HELP)
    check.set_defaults(handler=_check)
    _add_export(commands)
    return parser


def _add_export(commands: argparse._SubParsersAction[_Parser]) -> None:
    export = commands.add_parser(
        "export",
        help="print alert rules, their tests, a dashboard or a Prometheus config",
        description="Print one of the operations kit's files on standard output.",
        epilog=(
            "examples:\n"
            "  bigbrotr export rules > bigbrotr.rules.yml\n"
            "  bigbrotr export rules-tests > bigbrotr.rules.test.yml\n"
            "  promtool test rules bigbrotr.rules.test.yml\n"
            "  bigbrotr export file-sd --target 10.0.0.5:9100 --label env=prod > targets.json\n"
            "  bigbrotr export scrape-config --file-sd targets.json --rules bigbrotr.rules.yml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = export.add_subparsers(dest="artifact", required=True, parser_class=_Parser)
    job_help = "the scrape job to select (default: bigbrotr)"
    for name, summary in (
        ("rules", "Prometheus alert rules, a group per concern"),
        ("rules-tests", "the rules' unit tests, for promtool test rules"),
        ("dashboard", "a Grafana dashboard (JSON) with a $service variable"),
    ):
        kinds.add_parser(name, help=summary, description=summary).add_argument(
            "--job", default="bigbrotr", help=job_help
        )
    scrape = kinds.add_parser(
        "scrape-config",
        help="a prometheus.yml scraping the given targets",
        description="A prometheus.yml that scrapes bigbrotr services (promtool check config).",
    )
    scrape.add_argument("--target", action="append", default=[], metavar="HOST:PORT")
    scrape.add_argument(
        "--file-sd", action="append", default=[], metavar="FILE", help="a target file to read"
    )
    scrape.add_argument(
        "--rules", action="append", default=[], metavar="FILE", help="a rule file to evaluate"
    )
    scrape.add_argument("--job", default="bigbrotr", help=job_help)
    scrape.add_argument("--metrics-path", default="/metrics", metavar="PATH")
    scrape.add_argument("--scrape-interval", default="15s", metavar="DURATION")
    sd = kinds.add_parser(
        "file-sd",
        help="a file_sd_configs target file (JSON)",
        description="A target file for Prometheus' file_sd_configs, re-read when it changes.",
    )
    sd.add_argument("--target", action="append", default=[], metavar="HOST:PORT")
    sd.add_argument(
        "--label", action="append", default=[], metavar="NAME=VALUE", help="a target label"
    )
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace, signals: ShutdownSignals) -> int:
    from bigbrotr import ops

    signals.restore()
    try:
        if args.artifact == "scrape-config":
            text = ops.scrape_config(
                args.target,
                job=args.job,
                metrics_path=args.metrics_path,
                scrape_interval=args.scrape_interval,
                file_sd_files=args.file_sd,
                rule_files=args.rules,
            )
        elif args.artifact == "file-sd":
            text = ops.file_sd(args.target, args.label)
        else:
            text = ops.packaged(args.artifact, job=args.job)
    except ValueError as exc:
        raise UsageError(f"export {args.artifact}: {exc}") from None
    sys.stdout.write(text)
    return EXIT_OK


def _port(text: str) -> int:
    """A ``--port`` value: 0, or 1024 to 65535 (as ``metrics.port``)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not valid_port(port):
        raise argparse.ArgumentTypeError(f"{port} is not 0 or 1024-65535")
    return port


def _check(args: argparse.Namespace, signals: ShutdownSignals) -> int:
    import yaml

    from bigbrotr.targets import resolve_target

    signals.restore()  # nothing to stop gracefully: Ctrl-C just interrupts
    from bigbrotr.core.config import masked

    if (process := _process(args)) is not None:
        from bigbrotr.targets import check_endpoint

        check_endpoint(process.metrics, process.source)
        process.build()  # what `run` would do next
        resolved = {
            "metrics": masked(process.metrics),
            "services": {  # each with the process's endpoint: only what is its own
                name: {"target": target.name, "config": _own(masked(config))}
                for name, target, config in process.services
            },
        }
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
        for name, _, config in process.services:
            print(f"# {name}: {_first_start(config)}")
        return EXIT_OK
    target = resolve_target(args.target)
    config = target.load_config(args.config)
    target.check_host(config, args.config)
    target.check_web_config(config)
    target.build(config)  # what `run` would do next, so `check` fails where `run` would
    print(yaml.safe_dump(masked(config), sort_keys=False), end="")
    print(f"# {_first_start(config)}")
    return EXIT_OK


def _own(config: dict[str, Any]) -> dict[str, Any]:
    """A service's resolved config in a process: its ``metrics`` only as far as it is its own."""
    from bigbrotr.process_file import PER_SERVICE_METRICS

    metrics = {key: config["metrics"][key] for key in sorted(PER_SERVICE_METRICS)}
    return {**config, "metrics": metrics}


def _first_start(config: BaseServiceConfig) -> str:
    """The schedule in words and when a start now would run its first cycle (for people)."""
    import time
    from datetime import datetime
    from zoneinfo import ZoneInfo

    schedule = config.cycle_schedule()
    jitter = f", plus up to {config.jitter:g} s of jitter" if config.jitter else ""
    if config.runs_at_start():
        return f"{schedule.text}: the first cycle at start"
    if config.schedule is None:
        return f"{schedule.text}: the first cycle one interval after start{jitter}"
    first = datetime.fromtimestamp(schedule.after(time.time()), ZoneInfo(config.timezone))
    return f"{schedule.text}: started now, the first cycle at {first.isoformat()}{jitter}"


def _process(args: argparse.Namespace) -> Process | None:
    """The process file ``--config`` names when there is no TARGET; None with a TARGET.

    Raises:
        UsageError: Neither a TARGET nor a process file, or a TARGET with one.
    """
    from bigbrotr.process_file import is_process_file, load_process

    if args.target is not None:
        if args.config is not None and is_process_file(args.config):
            raise UsageError(
                f"{args.config} is a process file (services:), which names its own targets:"
                f" bigbrotr {args.command} --config {args.config}"
            )
        return None
    if args.config is None:
        raise UsageError("give a TARGET, or --config FILE with services: (a process file)")
    return load_process(args.config)


def _run_process(args: argparse.Namespace, signals: ShutdownSignals, process: Process) -> int:
    from bigbrotr import runner
    from bigbrotr.core.logger import configure_logging
    from bigbrotr.core.service_group import ServiceGroup

    if args.port is not None:
        if args.once:
            raise UsageError("--port: a --once run serves no metrics (it can push them)")
        process = process.with_port(args.port)
    group = ServiceGroup(process.build())
    configure_logging(process.source.stem, args.log_level, args.log_format)
    return runner.run_group(group, process.metrics, signals, once=args.once)


def _run(args: argparse.Namespace, signals: ShutdownSignals) -> int:
    from bigbrotr import runner, targets
    from bigbrotr.core.logger import configure_logging, get_logger

    if (process := _process(args)) is not None:
        return _run_process(args, signals, process)
    target = targets.resolve_target(args.target)
    config = target.load_config(args.config)
    if args.port is not None:
        if args.once:
            raise UsageError("--port: a --once run serves no metrics (it can push them)")
        config = targets.with_port(config, args.port, args.config or target.default_config)
    service = target.build(config)
    configure_logging(service.SERVICE_NAME, args.log_level, args.log_format)
    if args.config is None and target.default_config is None:
        metrics = config.metrics
        get_logger("bigbrotr.cli").warning(
            f"no --config: running on {type(config).__name__}'s defaults",
            interval_seconds=config.interval,
            metrics=f"on, {metrics.host}:{metrics.port}" if metrics.enabled else "off",
        )
    if args.target == "demo":
        get_logger("bigbrotr.demo").info(
            "the demo simulates a service: it fails about 1 cycle in 10 on purpose, so the "
            "failure metrics, logs and status page have something to show; "
            "another port: bigbrotr run demo --port 8001"
        )
    return runner.run(service, signals, once=args.once)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` by default.
    """
    signals = ShutdownSignals()
    signals.install()
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit:  # --help, --version, or a usage error
        signals.restore()
        raise
    try:
        code: int = args.handler(args, signals)
    except UsageError as exc:
        signals.restore()  # nothing runs after a mistake
        print(f"bigbrotr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C during `check`
        return EXIT_INTERRUPTED
    return code
