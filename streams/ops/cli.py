"""The ``chs`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from pydantic import ValidationError

from alerts.config import AlertRules, default_rules, load_rules
from scoring.config import ConfigError
from scoring.scoring_model import (
    ModelError,
    ScoringModel,
    default_model,
    load_model,
    shadow_conflicts,
)
from streams.settings import Settings
from streams.worker.connections import Unreachable, reaching

C = TypeVar("C")

if TYPE_CHECKING:
    from sim.files import CsvMapping


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"  CHS_{'_'.join(str(p) for p in e['loc']).upper() or '(settings)'}: {e['msg']}"
            for e in error.errors(include_url=False)
        ]
        sys.exit("chs: invalid configuration:\n" + "\n".join(problems))


def _configured(
    path: Path | None, load: Callable[[Path], C], default: Callable[[], C], what: str
) -> C:
    """The file's configuration, or the default one; exits on a bad file."""
    if path is None:
        return default()
    try:
        return load(path)
    except ConfigError as error:
        sys.exit(f"chs: invalid {what}:\n{error}")


def configured_model(settings: Settings) -> ScoringModel:
    """The model named by ``CHS_MODEL_FILE``, or the default one."""
    return _configured(settings.model_file, load_model, default_model, "scoring model")


def shadow_models(paths: list[Path], live: ScoringModel) -> tuple[ScoringModel, ...]:
    """The models of ``paths`` (``CHS_SHADOW_MODEL_FILES``, ``chs audit --candidate``); exits
    on a bad file or one that cannot be evaluated beside the live model."""
    shadows: list[ScoringModel] = []
    for path in paths:
        try:
            shadow = load_model(path)
        except ModelError as error:
            sys.exit(f"chs: invalid shadow model:\n{error}")
        problems = shadow_conflicts(live, shadow)
        if problems or shadow.version in {s.version for s in shadows}:
            problems = problems or ["it is already a shadow model"]
            sys.exit(f"chs: shadow model {path} cannot be used: " + "; ".join(problems))
        shadows.append(shadow)
    return tuple(shadows)


def configured_rules(settings: Settings) -> AlertRules:
    """The alert rules named by ``CHS_ALERT_RULES_FILE``, or the default ones."""
    return _configured(settings.alert_rules_file, load_rules, default_rules, "alert rules")


def _check_credentials(settings: Settings) -> None:
    """Exit with a clear message when Redis refuses the configured credentials."""
    from streams.worker.connections import CredentialsRefused, check_redis_credentials

    try:
        asyncio.run(check_redis_credentials(settings))
    except CredentialsRefused as refused:
        sys.exit(f"chs: {refused}")


def run_replay(
    settings: Settings, files: list[Path], speed: float | None, mapping: CsvMapping | None
) -> int:
    from sim.backtest import iter_sorted
    from sim.files import BadRecord, read_files
    from sim.progress import Progress
    from streams.ops.replay import replay
    from streams.worker.topics import ensure_topics

    if settings.create_topics:
        asyncio.run(ensure_topics(settings))
    progress = Progress("replaying")
    try:
        sent = asyncio.run(
            replay(settings, iter_sorted(read_files(files, mapping)), speed, progress)
        )
    except (BadRecord, ValueError, OSError) as error:
        print(f"\nchs replay: {error}", file=sys.stderr)
        return 2
    print(f"replayed {sent:,} records")
    return 0


def run_api(settings: Settings, model: ScoringModel) -> None:
    """Serve the score API and the at-risk page until SIGINT/SIGTERM."""
    from aiohttp import web

    from api.app import create_api
    from api.store import ReadModel
    from streams.worker.connections import redis_client

    _check_credentials(settings)
    api = create_api(ReadModel(redis_client(settings)), model, settings.api_token)
    url = f"http://{settings.api_host}:{settings.api_port}/"
    print(f"chs api: the at-risk page and the API at {url} (OpenAPI: {url}openapi.json)")
    web.run_app(api, host=settings.api_host, port=settings.api_port, print=None)


def run_worker(settings: Settings) -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM."""
    from streams.pipeline.clock import clock_for
    from streams.worker.app import create_app
    from streams.worker.faust_overrides import ChsWorker, UntestedRelease, check_tested_releases
    from streams.worker.topics import ensure_topics

    try:
        check_tested_releases()
    except UntestedRelease as untested:
        sys.exit(f"chs: {untested}")
    model = configured_model(settings)
    shadows = shadow_models(settings.shadow_model_files, model)
    rules = configured_rules(settings)
    _check_credentials(settings)
    if settings.create_topics:
        asyncio.run(ensure_topics(settings))
    app = create_app(settings, model, rules, clock_for(settings.clock), shadows)
    worker = ChsWorker(app, loglevel=settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        _exit_now(stopped.code)
    _exit_now(0)


def _exit_now(code: object) -> NoReturn:
    """Leave once the worker has stopped: Faust holds the app (its table, the peers'
    sketches) until the interpreter tears down, where nanobind reports every datasketches
    object still alive as a leak, hundreds of lines; by now everything is flushed and closed."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``14d`` or ``2w``."""
    match = re.fullmatch(r"(\d+)([mhdw])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 90m, 12h, 14d or 2w: {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(minutes=amount * {"m": 1, "h": 60, "d": 1440, "w": 10080}[unit])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chs", description="Customer Health Score engine")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the scoring worker (Faust)")

    demo = commands.add_parser("demo", help="produce a demo event stream for ~200 accounts")
    demo.add_argument("--accounts", type=int, default=200, help="number of demo accounts")
    demo.add_argument("--days", type=int, default=45, help="days of history sent first")
    demo.add_argument("--rate", type=float, default=20.0, help="live events per second")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--live-seconds", type=float, default=None, help="stop after (default: never)"
    )

    commands.add_parser("api", help="serve the score API and the at-risk page (reads Redis)")
    _add_history_commands(commands)
    commands.add_parser("watch", help="print score changes and alerts as they happen")
    alerts = commands.add_parser("alerts", help="alerts").add_subparsers(
        dest="alerts_command", required=True
    )
    alerts.add_parser("tail", help="print alerts from the alerts topic as they arrive")
    dev = commands.add_parser("dev", help="local broker + Redis + worker + demo + watch (make run)")
    dev.add_argument(
        "--broker", choices=["tansu", "kafka"],
        help="the local broker: tansu (the dev broker, no Java; default) or kafka (Apache "
        "Kafka 3.9.0; Java 17 and Maven). Env: CHS_DEV_BROKER",
    )  # fmt: skip
    broker = commands.add_parser(
        "broker", help="run one local broker in the foreground (Apache Kafka or Tansu)"
    )
    broker.add_argument("--kind", choices=["kafka", "tansu"], default="kafka")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument(
        "--data-dir", type=Path, help="its storage (default: a temporary folder, removed after)"
    )

    _add_account_commands(commands)
    return parser


def _add_history_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands over past events: simulate, replay, backtest, audit."""
    simulate = commands.add_parser(
        "simulate", help="simulated accounts and events with ground truth (churn, renewals)"
    )
    simulate.add_argument("--accounts", type=int, default=2_000)
    simulate.add_argument("--days", type=int, default=365)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    simulate.add_argument(
        "--profile",
        choices=["b2b-seats", "smb", "consumer", "usage-only", "annual-contracts"],
        default="b2b-seats",
        help="the kind of business: seats sold to teams, small businesses, consumers, an app "
        "with usage events only, or teams on annual contracts",
    )
    simulate.add_argument(
        "--out", type=Path, default=Path("simulation"), help="folder for events.jsonl, outcomes.csv"
    )
    simulate.add_argument(
        "--produce", action="store_true", help="also send the events to the topics"
    )
    replay = commands.add_parser(
        "replay", help="send historical events (JSONL or CSV) to the topics in event-time order"
    )
    replay.add_argument("files", type=Path, nargs="+")
    replay.add_argument(
        "--speed", type=float, help="time-lapse: event time runs this many times faster"
    )
    _mapping_arguments(replay)
    backtest = commands.add_parser(
        "backtest", help="how well the score predicted churn in past events"
    )
    backtest.add_argument("--events", type=Path, nargs="+", required=True)
    backtest.add_argument("--outcomes", type=Path, help="CSV: account_id, churned (0/1), "
                          "churn_date; without it, the outcome records among the events say "
                          "who churned")  # fmt: skip
    backtest.add_argument("--horizon", type=int, default=90, help="days after each date")
    backtest.add_argument("--every", type=int, default=30, help="days between observations")
    backtest.add_argument("--warmup", type=int, default=60, help="days of data before the first")
    backtest.add_argument(
        "--report", type=Path, help="write an HTML report with charts (.svg: the chart alone)"
    )
    backtest.add_argument(
        "--fit", type=Path, metavar="MODEL.yaml",
        help="fit measure weights (logistic regression), compare the fitted model with the "
        "current one on held-out accounts, and write it here if it is better",
    )  # fmt: skip
    backtest.add_argument(
        "--force", action="store_true",
        help="with --fit: write the fitted model even when it is not better",
    )  # fmt: skip
    _mapping_arguments(backtest)
    audit = commands.add_parser(
        "audit", help="what the live audit would say at the end of past events (docs/audit.md)"
    )
    audit.add_argument("--events", type=Path, nargs="+", required=True)
    audit.add_argument(
        "--candidate", type=Path, action="append", default=[], metavar="MODEL.yaml",
        help="a model judged beside the live one, as a shadow (repeatable)",
    )  # fmt: skip
    audit.add_argument(
        "--window", type=int, default=180, help="judge the churns of the last DAYS days"
    )
    _mapping_arguments(audit)


def _add_account_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands about models and accounts: model, score, override, account."""
    model = commands.add_parser("model", help="scoring model files").add_subparsers(
        dest="model_command", required=True
    )
    check = model.add_parser(
        "check", help="validate a model file and summarise it (no file: the packaged default)"
    )
    check.add_argument("file", type=Path, nargs="?")

    score = commands.add_parser("score", help="look at scores").add_subparsers(
        dest="score_command", required=True
    )
    explain = score.add_parser("explain", help="an account's score, components, drivers, trend")
    explain.add_argument("account")

    override = commands.add_parser("override", help="CSM sentiment overrides").add_subparsers(
        dest="override_command", required=True
    )
    set_override = override.add_parser("set", help="set an account's override")
    set_override.add_argument("account")
    set_override.add_argument("--score", type=float, required=True, help="0-100")
    set_override.add_argument("--reason", required=True)
    set_override.add_argument("--expires", type=parse_duration, required=True, help="e.g. 14d")
    set_override.add_argument("--author", required=True)
    set_override.add_argument(
        "--replace", metavar="OVERRIDE_ID", help="the active override this one replaces"
    )
    clear_override = override.add_parser("clear", help="end an account's override")
    clear_override.add_argument("account")
    clear_override.add_argument("--reason", required=True)
    clear_override.add_argument("--author", required=True)

    account = commands.add_parser("account", help="accounts").add_subparsers(
        dest="account_command", required=True
    )
    delete = account.add_parser(
        "delete", help="erase an account: its state, score, history and alerts (GDPR)"
    )
    delete.add_argument("account")
    delete.add_argument("--reason", required=True, help="why, for the log (e.g. a ticket id)")


def _mapping_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mapping", type=Path, help="CSV mapping file (JSON, see docs/backtest.md)"
    )
    parser.add_argument(
        "--column", action="append", default=[], metavar="FIELD=COLUMN",
        help="CSV column holding one of our fields, e.g. account_id=customer",
    )  # fmt: skip
    parser.add_argument(
        "--kind", action="append", default=[], metavar="THEIRS=OURS",
        help="an export's event type as one of our kinds, e.g. signin=login",
    )  # fmt: skip


def _mapping(args: argparse.Namespace) -> CsvMapping:
    from sim.files import CsvMapping

    mapping = CsvMapping.load(args.mapping) if args.mapping else CsvMapping()
    for option, target in ((args.column, mapping.columns), (args.kind, mapping.kinds)):
        for pair in option:
            key, sep, value = pair.partition("=")
            if not sep or not key or not value:
                sys.exit(f"chs: expected NAME=VALUE, got {pair!r}")
            target[key] = value
    return mapping


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except Unreachable as error:
        sys.exit(f"chs: {error}")


def _run(args: argparse.Namespace) -> None:
    if args.command == "model":
        from streams.ops.commands import check_model

        sys.exit(check_model(args.file))
    if args.command == "broker":
        from streams.ops.local_broker import BrokerKind, run_broker

        sys.exit(run_broker(BrokerKind(args.kind), args.port, args.data_dir))
    if args.command == "backtest":
        from sim.backtest import BacktestOptions
        from sim.commands import BacktestRun, backtest

        run = BacktestRun(
            args.events,
            args.outcomes,
            BacktestOptions(args.horizon, args.every, args.warmup),
            args.report,
            _mapping(args),
            args.fit,
            args.force,
        )
        sys.exit(backtest(run, configured_model(_load_settings())))
    settings = _load_settings()
    if args.command == "audit":
        from streams.ops.audit_replay import audit_files

        live = configured_model(settings)
        candidates = shadow_models(args.candidate, live)
        rules = configured_rules(settings)
        sys.exit(audit_files(args.events, _mapping(args), live, candidates, rules, args.window))
    if args.command == "worker":
        run_worker(settings)
    elif args.command == "demo":
        from streams.ops.demo import DemoOptions, run_demo

        options = DemoOptions(
            accounts=args.accounts,
            history_days=args.days,
            live_rate=args.rate,
            seed=args.seed,
            live_seconds=args.live_seconds,
        )
        asyncio.run(run_demo(settings, options))
    elif args.command == "simulate":
        from sim.commands import simulate
        from sim.simulator import SimOptions

        events, outcomes = simulate(
            SimOptions(args.accounts, args.days, args.seed, args.start, profile=args.profile),
            args.out,
        )
        print(f"events: {events}\noutcomes: {outcomes}")
        if args.produce:
            sys.exit(run_replay(settings, [events], None, None))
    elif args.command == "replay":
        sys.exit(run_replay(settings, args.files, args.speed, _mapping(args)))
    elif args.command == "api":
        run_api(settings, configured_model(settings))
    elif args.command == "watch":
        from streams.ops.watch import watch_scores

        labels = [band.label for band in configured_model(settings).bands]
        reaching(settings, watch_scores(settings, labels))
    elif args.command == "alerts":
        from streams.ops.watch import tail_alerts

        reaching(settings, tail_alerts(settings))
    elif args.command == "dev":
        from streams.ops.devstack import run_dev
        from streams.ops.local_broker import BrokerKind

        kind = BrokerKind(args.broker or settings.dev_broker)
        sys.exit(run_dev(settings, configured_model(settings), kind))
    elif args.command == "score":
        from streams.ops.commands import explain_account

        model = configured_model(settings)
        sys.exit(reaching(settings, explain_account(settings, args.account, model)))
    elif args.command == "override":
        from streams.ops.commands import send_override

        sys.exit(reaching(settings, send_override(settings, args)))
    elif args.command == "account":
        from streams.ops.commands import erase_account

        sys.exit(reaching(settings, erase_account(settings, args)))


if __name__ == "__main__":
    main()
