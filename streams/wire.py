"""Names on the wire: what a project topic is, and the headers the worker writes and reads.

The topics themselves are listed once, in ``Settings.topics`` (their names are settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.pipeline.account_step import TopicRole

REASON_HEADER = "chs-reason"
"""Why, in words: a dead letter's refusal, an undeliverable alert's failure, or the request
behind an erasure (a tombstone on the accounts topic)."""
REASON_CODE_HEADER = "chs-reason-code"
"""A dead letter's refusal as a code (docs/events.md)."""
SOURCE_HEADERS = ("chs-source-topic", "chs-source-partition", "chs-source-offset")
"""Where a dead letter was read."""
ERASED_HEADER = "chs-erased"
"""On a tombstone on ``chs.scores``: the account was erased (not churned), and the view erases
its alerts too."""


@dataclass(frozen=True)
class TopicSpec:
    """A project topic: its name, what the scoring task reads it as (None: not an input) and
    its shape."""

    name: str
    role: TopicRole | None = None
    books: bool = False
    """One partition of per-partition books, read whole by every worker (else the account
    partitions, co-partitioned with the inputs)."""
    compacted: bool = False

    def partitions(self, account_partitions: int) -> int:
        return 1 if self.books else account_partitions
