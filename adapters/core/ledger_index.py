"""The index of one ledger partition on local disk (sqlite, from the standard library).

Per ledger record key, a 16-byte digest and the offset of the key's latest record: about
25 bytes of disk per key and nothing of memory, whatever the size of the ledger. Beside the
rows, where the index stands in the topic (`next_offset`) and a few sample records, so that a
later run can tell whether the file still describes the same log and go on from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# Sample records kept to recognise the log at the next start (any one still in place will do).
SAMPLES = 4


def digest(record_key: bytes) -> bytes:
    """The index key of a ledger record key."""
    return hashlib.blake2b(record_key, digest_size=16).digest()


@dataclass(frozen=True)
class Sample:
    """A record the index applied: it must still be at `offset` for the index to be reused."""

    offset: int
    digest: bytes


_FORMAT = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (digest BLOB PRIMARY KEY, offset INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# A restore appends here and merges now and then: one sorted pass over `keys` instead of a
# random insert per record (twice as fast at millions of keys, as fast at 5M as at 1M). In
# the temporary database, so the index file never holds the staging's pages; what is staged
# counts only once merged (the position moves with the merge).
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS stage (digest BLOB NOT NULL, offset INTEGER NOT NULL,
                                       tombstone INTEGER NOT NULL)
"""
# The latest staged record per key; -1 where it is a tombstone (deleted after the merge).
# `tombstone` is taken from the row of max(offset): SQLite's rule for a bare column beside a
# single max() aggregate.
_MERGE = """
INSERT OR REPLACE INTO keys (digest, offset)
SELECT digest, CASE WHEN tombstone THEN -1 ELSE latest END
FROM (SELECT digest, max(offset) AS latest, tombstone FROM stage GROUP BY digest)
"""


class LedgerIndex:
    """Digest of each ledger record key → offset of its latest record, and where the index
    stands in the topic (`next_offset`, the first offset not applied yet)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        identity: str,
        path: Path | None = None,
        lock: IO[bytes] | None = None,
    ) -> None:
        self._db = db
        self.identity = identity
        # Set when the index lives in a state directory and can be reused after a restart.
        self.path = path
        self._lock = lock
        self._db.executescript(_SCHEMA)
        self._db.execute(_STAGE)
        self.staged = 0
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != _FORMAT or meta.get("identity") != identity:
            self.reset()
        else:
            self.next_offset = int(meta.get("next_offset", "0"))
            self.purged_below = int(meta.get("purged_below", "0"))
            self.samples = [Sample(o, bytes.fromhex(d)) for o, d in json.loads(meta["samples"])]

    @classmethod
    def open(cls, state_dir: Path | None, *, identity: str, name: str) -> LedgerIndex:
        """The index `name` in `state_dir` (reused if it is there and free), else a private
        temporary one that disappears when closed, also when the process is killed."""
        if state_dir is not None:
            index = cls._kept(state_dir / f"{name}.sqlite3", identity=identity)
            if index is not None:
                return index
        fd, temp = tempfile.mkstemp(prefix=f"workbridge-{name}-", suffix=".sqlite3")
        os.close(fd)
        db = _connect(Path(temp), durable=False)
        # Unlinked while open: nothing is left behind whatever way the process ends.
        os.unlink(temp)
        return cls(db, identity=identity)

    @classmethod
    def _kept(cls, path: Path, *, identity: str) -> LedgerIndex | None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_suffix(".lock").open("ab")
        try:
            # Two owners of one partition overlap during a hand-over; a second one on the
            # same disk (another process, or a test's second bridge) keeps its own.
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            log.warning("ledger index %s is in use; using a temporary one", path)
            return None
        try:
            try:
                return cls._on_file(path, identity=identity, lock=lock)
            except sqlite3.DatabaseError as exc:
                log.warning("ledger index %s unreadable (%s): rebuilding it", path, exc)
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{path}{suffix}")
                return cls._on_file(path, identity=identity, lock=lock)
        except BaseException:
            lock.close()
            raise

    @classmethod
    def _on_file(cls, path: Path, *, identity: str, lock: IO[bytes]) -> LedgerIndex:
        db = _connect(path, durable=True)
        # The staging and the merge's sort live in temporary files: they belong on the
        # volume meant for the index, not on a small /tmp. (Process-wide; sqlite has no
        # per-connection setting, and nothing else in the process uses sqlite.)
        quoted = str(path.parent.resolve()).replace("'", "''")
        db.execute(f"PRAGMA temp_store_directory = '{quoted}'")
        try:
            return cls(db, identity=identity, path=path, lock=lock)
        except BaseException:
            db.close()
            raise

    @classmethod
    def in_memory(cls, identity: str = "memory") -> LedgerIndex:
        """An index held in memory (tests and small tools only: it grows with the ledger)."""
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        return cls(db, identity=identity)

    def lookup(self, key_digest: bytes) -> int | None:
        """The offset of the latest record of this digest's key, None if there is none."""
        row = self._db.execute("SELECT offset FROM keys WHERE digest = ?", (key_digest,)).fetchone()
        return None if row is None else int(row[0])

    def apply(
        self,
        upserts: Mapping[bytes, int],
        deletes: Iterable[bytes] = (),
        *,
        next_offset: int,
        sample: Sample | None,
    ) -> None:
        """Apply records up to `next_offset` (digest → offset of its latest record, and the
        digests whose latest record is a tombstone) in one transaction, with the new
        position: a crash keeps both or neither."""
        rows = sorted(upserts.items())  # in key order: neighbouring pages of the B-tree
        gone = [(d,) for d in sorted(deletes)]
        samples = [*self.samples, sample][-SAMPLES:] if sample is not None else self.samples
        position = max(self.next_offset, next_offset)
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO keys (digest, offset) VALUES (?, ?)", rows)
            db.executemany("DELETE FROM keys WHERE digest = ?", gone)
            self._write_meta(next_offset=position, samples=samples)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.next_offset, self.samples = position, samples

    def stage(self, rows: list[tuple[bytes, int, int]]) -> None:
        """Stage restored records (digest, offset, 1 for a tombstone), in offset order."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO stage (digest, offset, tombstone) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.staged += len(rows)

    def discard_staged(self) -> None:
        """Forget what is staged and not merged (a restore starting again from the position)."""
        self._db.execute("DELETE FROM temp.stage")
        self.staged = 0

    def merge(self, *, next_offset: int, sample: Sample | None) -> None:
        """Apply what is staged (the latest record of each key wins), with the position it
        reached, in one transaction."""
        samples = [*self.samples, sample][-SAMPLES:] if sample is not None else self.samples
        position = max(self.next_offset, next_offset)
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(_MERGE)
            db.execute(
                "DELETE FROM keys WHERE offset = -1"
                " AND digest IN (SELECT digest FROM stage WHERE tombstone)"
            )
            db.execute("DELETE FROM stage")
            self._write_meta(next_offset=position, samples=samples)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.next_offset, self.samples, self.staged = position, samples, 0

    def reset(self) -> None:
        """Forget everything: the index is rebuilt from the start of the partition."""
        db = self._db
        db.execute("BEGIN")
        db.execute("DROP TABLE IF EXISTS keys")
        db.execute("DELETE FROM temp.stage")
        db.execute("DELETE FROM meta")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        self._write_meta(next_offset=0, samples=[], purged_below=0)
        db.execute("COMMIT")
        self.next_offset, self.samples, self.purged_below = 0, [], 0

    def purge_below(self, offset: int) -> None:
        """Drop rows of records the topic no longer has (older than its retention)."""
        if offset <= self.purged_below:
            return
        db = self._db
        db.execute("BEGIN")
        db.execute("DELETE FROM keys WHERE offset < ?", (offset,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('purged_below', ?)", (str(offset),))
        db.execute("COMMIT")
        self.purged_below = offset

    def settle(self) -> None:
        """After a restore: back to small transactions, and the page cache of the bulk
        inserts given back."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("PRAGMA wal_autocheckpoint = 1000")
        self._db.execute("PRAGMA cache_size = -2048")
        self._db.execute("PRAGMA shrink_memory")

    def size_bytes(self) -> int:
        """Bytes the index takes on disk (or in memory)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def close(self) -> None:
        """Close the file (a temporary index is gone with it) and release its lock."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _write_meta(
        self, *, next_offset: int, samples: list[Sample], purged_below: int | None = None
    ) -> None:
        rows = [
            ("format", _FORMAT),
            ("identity", self.identity),
            ("next_offset", str(next_offset)),
            ("samples", json.dumps([[s.offset, s.digest.hex()] for s in samples])),
        ]
        if purged_below is not None:
            rows.append(("purged_below", str(purged_below)))
        self._db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", rows)


def _connect(path: Path, *, durable: bool) -> sqlite3.Connection:
    # Used by one thread at a time: the restore's long steps run in a worker thread while
    # nothing else touches the index, everything else on the event loop.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if durable:
        # WAL keeps every committed transaction through a crash of the process, and with
        # synchronous=NORMAL a crash of the machine can lose the newest but never damage
        # the file (fsync at checkpoints only). Losing the newest is harmless: the index
        # then stands at an earlier offset and reads the rest again.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        # Fewer, larger checkpoints while restoring: a page changed by many transactions
        # is copied into the database once (`settle` restores the default).
        db.execute("PRAGMA wal_autocheckpoint = 10000")
    else:
        db.execute("PRAGMA journal_mode = OFF")  # nothing to recover: it dies with us
    # A larger page cache while restoring (the merge's sort); `settle` gives it back.
    db.execute("PRAGMA cache_size = -16384")
    return db
