from __future__ import annotations

import uuid

import pytest

from streams.ops import local_kafka


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes as "-" first in URL-safe base64: the storage tool took such an id for an
    # option ("--cluster-id/-t: expected one argument") and the test session had no broker.
    drawn = [uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)]
    monkeypatch.setattr(uuid, "uuid4", lambda: drawn.pop(0))
    found = local_kafka.cluster_id()
    assert not found.startswith("-")
    assert len(found) == 22
    assert drawn == []  # the first draw was refused
