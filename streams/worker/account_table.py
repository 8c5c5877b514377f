"""The account table: account id -> ``AccountState`` in memory, an input record and parts in
its changelog (``streams/worker/state_records.py``), merged after each recovery."""

from __future__ import annotations

import gc
import logging
from collections.abc import MutableMapping
from functools import cached_property
from typing import Any, cast

import faust
from faust.serializers import codecs
from faust.types import TP

from scoring.state import AccountState
from streams.pipeline.ownership import Ownership
from streams.worker import metrics
from streams.worker.faust_overrides import ChsConsumer, CodecTable, batch_sender
from streams.worker.state_records import StateWriter, decode, merge_recovered

log = logging.getLogger(__name__)

ACCOUNT_STATE_CODEC = "chs_account_state"


class AccountStateCodec(codecs.Codec):
    """Table values are ``AccountState`` in memory; in the changelog, an input record and parts,
    merged into states once recovered (``AccountTable.on_recovery_completed``)."""

    def _dumps(self, obj: Any) -> bytes:
        assert isinstance(obj, AccountState)
        return obj.model_dump_json(exclude_defaults=True).encode()  # the older, whole form

    def _loads(self, s: bytes) -> Any:
        return decode(s)


codecs.register(ACCOUNT_STATE_CODEC, AccountStateCodec())


class AccountTable(CodecTable[bytes, AccountState]):
    """Account id (raw bytes) -> AccountState, with the partitions this worker owns."""

    value_codec = ACCOUNT_STATE_CODEC

    def __init__(
        self, app: faust.App, partitions: int, state_writer: StateWriter, ownership: Ownership
    ) -> None:
        super().__init__(
            app,
            name="accounts",
            default=None,
            partitions=partitions,
            key_type=bytes,
            beacon=app.tables.beacon,
        )
        self.state_writer = state_writer
        self.ownership = ownership
        self.active_partitions: frozenset[int] = frozenset()
        self.standby_partitions: frozenset[int] = frozenset()

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        changelogs = self.app.tables.changelog_topics
        kept = {tp.partition for tp in assigned if tp.topic not in changelogs}
        self.ownership.keep_only(kept)
        # None is scored until the recovery that follows has merged the states again: it
        # replays every active partition's changelog, kept ones too, into records not yet
        # merged (a due account re-evaluated then met an unmerged record and stopped the worker).
        self.active_partitions = frozenset()
        cast(ChsConsumer, self.app.consumer).recovering(True)
        metrics.CONSUMER_LAG.clear()  # no stale lag for partitions now read elsewhere
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    def write_changelog(self, key: bytes, partition: int, encoded: bytes | None) -> None:
        """A changelog record of an account's state (None deletes it), queued in the batch
        sender beside the outputs (Faust's ``send_changelog`` goes through its buffer one
        record at a time); the store itself is set by the scoring task. The memory store
        keeps no persisted offsets, so Faust's callback on a sent record has nothing to do."""
        batch_sender(self.app).add(self._changelog_name, key, encoded, partition=partition)

    @cached_property
    def _changelog_name(self) -> str:
        return self.changelog_topic.get_topic_name()

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        cast(ChsConsumer, self.app.consumer).recovering(False)
        # Merging builds every account's state at once: collections in between would walk
        # the states already built, again and again, for nothing (all of them live on).
        gc.disable()
        try:
            not_read = merge_recovered(self.data, self.state_writer)
        finally:
            gc.enable()
        if not_read:
            metrics.PARTS_NOT_RECOVERED.inc(sum(len(parts) for parts in not_read.values()))
            named = ", ".join(f"{k.decode()} {'/'.join(p)}" for k, p in list(not_read.items())[:5])
            log.error(
                "Recovery: parts named by %d accounts' input records were not read back "
                "(left at their defaults), e.g. %s",
                len(not_read),
                named,
            )
        owned = {tp.partition for tp in active_tps}
        self.active_partitions = frozenset(owned)
        self.standby_partitions = frozenset(tp.partition for tp in standby_tps)
        bands = self.ownership.take(self.items(), owned)
        # The recovered states live as long as the worker: full collections need not walk them.
        gc.freeze()
        metrics.REBALANCES.inc()
        metrics.ACCOUNTS_HELD.set(sum(bands.values()))
        for band in {b.label for b in self.ownership.model.bands} | set(bands):
            metrics.ACCOUNTS_BY_BAND.labels(band).set(bands[band])
        log.info(
            "Owning partitions %s: %d accounts scheduled",
            sorted(owned),
            len(self.ownership.schedule),
        )


class TableStore:
    """The account table's in-memory data as the scoring step's ``AccountStore``."""

    def __init__(self, data: MutableMapping[bytes, AccountState]) -> None:
        self._data = data

    def get(self, key: bytes) -> AccountState | None:
        return self._data.get(key)

    def put(self, key: bytes, state: AccountState) -> None:
        self._data[key] = state

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)
