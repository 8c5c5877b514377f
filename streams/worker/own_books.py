"""The books a worker keeps per partition it owns (peer sketches, audit figures)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

Book = TypeVar("Book")

NO_PARTITION = -1
"""Where the accounts of no known partition keep their books (tests without a broker)."""


class OwnBooks(ABC, Generic[Book]):
    def __init__(self) -> None:
        self._own: dict[int, Book] = {}

    @abstractmethod
    def _new_book(self, partition: int) -> Book:
        """The book a partition starts with when this worker takes it."""

    def book_for(self, partition: int | None) -> Book:
        key = NO_PARTITION if partition is None else partition
        book = self._own.get(key)
        if book is None:
            book = self._own[key] = self._new_book(key)
        return book

    def keep_only(self, partitions: set[int]) -> None:
        """Forget the books of partitions now another worker's (it carries them on)."""
        for partition in set(self._own) - partitions:
            del self._own[partition]
