"""Group the rows of one file by order number, in order of first appearance, with flat memory.

Rows of one order need not be next to each other (a sheet sorted by product spreads an order out), so no order
is complete before the file ends. Up to ``spill_rows`` rows are kept in a dict; past that, every row moves to a
temporary SQLite file (stdlib, deleted afterwards) and groups are read back through an index, so memory stays
flat however large the file is.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Any

Key = str


class RowGrouper:
    """``add(key, row)`` in file order, then ``groups()`` once: (key, [rows]) by first appearance of the key."""

    def __init__(self, spill_rows: int = 50_000) -> None:
        self.spill_rows = max(1, int(spill_rows))
        self._groups: dict[Key, list[Any]] = {}
        self._count = 0
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[Key, int, Any]] = []
        self._path: str | None = None

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def add(self, key: Key, row: Any) -> None:
        self._count += 1
        if self._db is None:
            self._groups.setdefault(key, []).append(row)
            if self._count > self.spill_rows:
                self._spill()
        else:
            self._pending.append((key, self._count, row))
            if len(self._pending) >= 1000:
                self._insert(self._pending)
                self._pending = []

    def _spill(self) -> None:
        fd, self._path = tempfile.mkstemp(prefix="orderfile-", suffix=".sqlite")
        os.close(fd)
        db = sqlite3.connect(self._path)
        db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8000;"
            "CREATE TABLE k (key TEXT PRIMARY KEY, first INTEGER NOT NULL);"
            "CREATE TABLE r (key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL);"
        )
        self._db = db
        seq = 0
        batch = []
        for key, rows in self._groups.items():
            for row in rows:
                seq += 1
                batch.append((key, seq, row))
        self._groups = {}
        self._insert(batch)

    def _insert(self, batch: list[tuple[Key, int, Any]]) -> None:
        assert self._db is not None
        # pickle is safe here: the file is private to this process (mkstemp, mode 0600) and deleted after use
        self._db.executemany("INSERT OR IGNORE INTO k VALUES (?, ?)", [(k, s) for k, s, _ in batch])
        self._db.executemany("INSERT INTO r VALUES (?, ?, ?)",
                             [(k, s, pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)) for k, s, row in batch])

    def groups(self) -> Iterator[tuple[Key, list[Any]]]:
        if self._db is None:
            yield from self._groups.items()
            return
        db = self._db
        self._insert(self._pending)
        self._pending = []
        db.execute("CREATE INDEX r_key ON r (key, seq)")
        db.execute("CREATE INDEX k_first ON k (first)")
        cur = db.execute("SELECT k.key, r.data FROM k JOIN r ON r.key = k.key ORDER BY k.first, r.seq")
        current: Key | None = None
        rows: list[Any] = []
        for key, data in cur:
            if key != current:
                if current is not None:
                    yield current, rows
                current, rows = key, []
            rows.append(pickle.loads(data))
        if current is not None:
            yield current, rows

    def close(self) -> None:
        self._groups = {}
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._path = None

    def __enter__(self) -> RowGrouper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
