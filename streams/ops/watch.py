"""``chs watch``: print score changes from the scores topic as they happen.

Prints band changes and moves of at least ``min_move`` points, one line each, and every few
seconds a summary of accounts per band: enough to follow ~200 accounts in a terminal.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from aiokafka import ConsumerRecord

from alerts.alert import Alert
from alerts.delivery.slack import log_line
from scoring.update import ScoreUpdate
from streams.settings import Settings
from streams.worker.consumer_loop import ConsumerLoop, each_record

_GREEN, _YELLOW, _RED, _RESET = "\033[32m", "\033[33m", "\033[31m", "\033[0m"


class ScoreFeed:
    """Formats ScoreUpdates for a terminal and keeps the latest band of each account."""

    def __init__(
        self,
        out: TextIO,
        band_labels: list[str],
        min_move: float = 3.0,
        colour: bool | None = None,
    ) -> None:
        self._out = out
        self._labels = band_labels
        self._min_move = min_move
        self._colour = out.isatty() if colour is None else colour
        self.bands: dict[str, str] = {}
        self.new: set[str] = set()
        """Accounts still onboarding (too few days of data to be judged)."""
        self.groups: set[str] = set()
        """Parents scored as roll-ups of their children."""
        self.updates = 0

    def _band(self, band: str | None) -> str:
        if band is None:
            return "-"
        if not self._colour:
            return band
        rank = self._labels.index(band) if band in self._labels else len(self._labels)
        colour = _GREEN if rank == 0 else _RED if rank >= len(self._labels) - 1 else _YELLOW
        return f"{colour}{band}{_RESET}"

    def show(self, update: ScoreUpdate) -> None:
        account = update.account_id
        self.bands[account] = update.band
        for kept, marked in ((self.new, update.onboarding), (self.groups, update.rollup)):
            if marked is not None:
                kept.add(account)
            else:
                kept.discard(account)
        self.updates += 1
        previous = update.previous_score
        moved = previous is None or abs(update.score - previous) >= self._min_move
        if not moved and update.band == update.previous_band:
            return
        old = "first" if previous is None else f"{previous:5.1f}"
        marks = " stale" if update.stale else ""
        if update.onboarding is not None:
            marks += " new"
        self._out.write(
            f"{update.account_id:<12} {old:>5} -> {update.score:5.1f}  "
            f"{self._band(update.band):<8} {update.grade}{marks}  {update.summary}\n"
        )

    def withdraw(self, account_id: str) -> None:
        """The account churned: its score is withdrawn (a tombstone on ``chs.scores``)."""
        self.new.discard(account_id)
        self.groups.discard(account_id)
        if self.bands.pop(account_id, None) is not None:
            self._out.write(f"{account_id:<12} churned: no longer scored\n")

    def summary(self) -> None:
        counts = Counter(self.bands.values())
        labels = self._labels + sorted(set(counts) - set(self._labels))
        parts = ", ".join(f"{counts.get(band, 0)} {self._band(band)}" for band in labels)
        groups = f" ({len(self.groups)} of them groups)" if self.groups else ""
        new = f"; {len(self.new)} new" if self.new else ""
        self._out.write(
            f"--- {len(self.bands)} accounts{groups}: {parts}{new}; "
            f"{self.updates} score updates so far\n"
        )
        self._out.flush()

    def show_alert(self, alert: Alert) -> None:
        line = log_line(alert)
        if self._colour:
            colour = {"critical": _RED, "warning": _YELLOW}.get(alert.severity.value, _GREEN)
            line = f"{colour}{line}{_RESET}"
        self._out.write(line + "\n")


async def follow(
    settings: Settings,
    topics: list[str],
    handle: Callable[[str, bytes | None, bytes | None], None],
    tick: Callable[[], None] | None = None,
) -> None:
    """Read ``topics`` from the beginning, forever, handing each record's topic, key and
    value (None: a tombstone) to ``handle``."""

    def take(record: ConsumerRecord[bytes, bytes]) -> None:
        handle(record.topic, record.key, record.value)

    def after() -> None:
        if tick is not None:
            tick()
        sys.stdout.flush()

    await ConsumerLoop(settings, "watch", topics, poll_seconds=0.5).run(each_record(take, after))


async def watch_scores(
    settings: Settings, band_labels: list[str], summary_every: float = 5.0
) -> None:
    """Score changes and alerts, as they happen, with a summary every few seconds."""
    feed = ScoreFeed(sys.stdout, band_labels)
    last_summary = time.monotonic()

    def handle(topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if topic == settings.topic_scores and key is not None:
                feed.withdraw(key.decode())
        elif topic == settings.topic_alerts:
            feed.show_alert(Alert.model_validate_json(value))
        else:
            feed.show(ScoreUpdate.model_validate_json(value))

    def tick() -> None:
        nonlocal last_summary
        if time.monotonic() - last_summary >= summary_every:
            feed.summary()
            last_summary = time.monotonic()

    await follow(settings, [settings.topic_scores, settings.topic_alerts], handle, tick)


async def tail_alerts(settings: Settings) -> None:
    """``chs alerts tail``: one line per alert as it arrives."""
    feed = ScoreFeed(sys.stdout, [])

    def handle(topic: str, key: bytes | None, value: bytes | None) -> None:
        del topic, key
        if value is not None:
            feed.show_alert(Alert.model_validate_json(value))

    await follow(settings, [settings.topic_alerts], handle)
