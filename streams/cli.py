"""The ``chs`` command: ``worker``, ``demo``, ``watch`` and ``dev``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from scoring.model import DEFAULT_MODEL
from streams.settings import Settings


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"  CHS_{'_'.join(str(p) for p in e['loc']).upper() or '(settings)'}: {e['msg']}"
            for e in error.errors(include_url=False)
        ]
        sys.exit("chs: invalid configuration:\n" + "\n".join(problems))


def run_worker(settings: Settings) -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM."""
    import faust

    from streams.app import create_app
    from streams.topics import ensure_topics

    if settings.create_topics:
        asyncio.run(ensure_topics(settings))
    app = create_app(settings, DEFAULT_MODEL)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="chs", description="Customer Health Score engine")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the scoring worker (Faust)")
    demo = commands.add_parser("demo", help="produce a demo event stream for ~200 accounts")
    demo.add_argument("--accounts", type=int, default=200, help="number of demo accounts")
    demo.add_argument("--days", type=int, default=30, help="days of history sent first")
    demo.add_argument("--rate", type=float, default=20.0, help="live events per second")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--live-seconds", type=float, default=None, help="stop after (default: never)"
    )
    commands.add_parser("watch", help="print score changes from the scores topic")
    commands.add_parser("dev", help="local broker + Redis + worker + demo + watch (make run)")
    args = parser.parse_args(argv)
    settings = _load_settings()

    if args.command == "worker":
        run_worker(settings)
    elif args.command == "demo":
        from streams.demo import DemoOptions, run_demo

        options = DemoOptions(
            accounts=args.accounts,
            history_days=args.days,
            live_rate=args.rate,
            seed=args.seed,
            live_seconds=args.live_seconds,
        )
        asyncio.run(run_demo(settings, options))
    elif args.command == "watch":
        from streams.watch import watch_scores

        asyncio.run(watch_scores(settings))
    elif args.command == "dev":
        from streams.devstack import run_dev

        sys.exit(run_dev(settings))


if __name__ == "__main__":
    main()
