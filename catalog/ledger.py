"""What a kind's stored answers were when a run first compared with them, held in memory.

A no-op re-sync compares every listed answer with the stored one. In SQL that is a primary-key
lookup per key, which on PostgreSQL is an index probe and a heap fetch in a server that shares
the machine's cores with the walk and the console: it keeps a no-op re-sync of a long listing
well above the fetch-only walk. A ``Ledger`` is filled by one scan of the kind's alive
rows, made by the store's loader thread on a connection of its own while the run goes on
(``store.LedgerLoader``): a 64-bit fingerprint of each (key, answer hash) pair in an open-addressing
table, with a byte of state beside it. An answer whose fingerprint is there is
unchanged and is marked seen in that byte, with no statement. Anything else (a miss, a row this
run has since written or deleted) goes to the SQL lookup: a miss is never taken for a change
without the database's word.

The fingerprint is Python's ``hash`` of the (key, hash) pair, which is also the hash of the
database row that holds the two, so a scan is fingerprinted without a Python step per row. It
is salted afresh in every process (unless ``PYTHONHASHSEED`` pins it): a changed answer is
taken for unchanged only if its pair shares a fingerprint with a stored pair of the kind, about
``rows / 2**64`` per comparison, and with a new salt each run the same two pairs do not meet
again the next run.

A stored row whose detail was answered (every ``unanswered`` column set) is held with
``ANSWERED`` appended to its hash: hex digests never contain it, so the pair cannot be taken for
another, and a detail check asks for that form only.

A ledger is shared by two threads: the writer, and the walk's thread that settles a listing's
pages before handing them on (``Store.settle_unchanged``). Every method that reads or changes the
states takes ``lock``.

Memory is at most 13.5 bytes per alive row (an 8-byte slot and a state byte, the table kept at
most two thirds full), with no keys held: when the run's end needs the seen keys in the
database (anything but a no-op), ``take`` tells a second scan which to write. While a kind is
read, its fingerprints are gathered first (8 bytes a row) and the table is sized for them.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Mapping

#: Appended to the stored hash of a row whose detail was answered.
ANSWERED = "+"
#: A row's state.
UNSEEN, COUNTED, LISTED, GONE = 0, 1, 2, 3


class Ledger:
    """Fingerprints of one kind's alive stored rows and what this run did with each.

    - ``COUNTED``: seen by this run, counted in ``counted``, its key not in the database;
    - ``LISTED``: seen, its key in the run's temporary "seen" table;
    - ``GONE``: this run wrote or deleted the row, so its stored hash is no longer this one.
    """

    def __init__(self, expected: int, answered: bool) -> None:
        """Room for ``expected`` rows; ``answered``: the kind marks rows whose detail was
        answered (it has ``unanswered`` columns)."""
        self._size = expected + expected // 2 + 16
        self._slots = array("q", bytes(8 * self._size))
        self._state = bytearray(self._size)
        self._answered = answered
        self.entries = 0
        #: Rows seen by this run whose keys are not in the temporary table.
        self.counted = 0
        #: The counted keys went to the temporary table (``take``); later hits go there too.
        self.listed = False
        self.lock = threading.Lock()

    def fill(self, fingerprints: Iterable[int]) -> bool:
        """Hold the stored rows' fingerprints; False when there are more than the ledger was
        sized for (it is then to be dropped)."""
        slots, size = self._slots, self._size
        room = 2 * size // 3 - self.entries
        for fp in fingerprints:
            fp = fp or 1  # 0 marks an empty slot
            i = fp % size
            while True:
                found = slots[i]
                if found == fp:
                    break  # the same pair again: one entry serves both
                if not found:
                    room -= 1
                    if room < 0:
                        return False
                    slots[i] = fp
                    break
                i = i + 1 if i + 1 < size else 0
        self.entries = 2 * size // 3 - room
        return True

    def _find(self, fp: int) -> int:
        """The slot holding ``fp``, or -1."""
        fp = fp or 1
        slots, size = self._slots, self._size
        i = fp % size
        while True:
            found = slots[i]
            if found == fp:
                return i
            if not found:
                return -1
            i = i + 1 if i + 1 < size else 0

    def _slot(self, key: str, digest: str, answered: bool) -> int:
        """The slot of the stored row with this key and hash (with its detail answered, if
        ``answered``), or -1."""
        i = -1 if answered else self._find(hash((key, digest)))
        if i < 0 and self._answered:
            i = self._find(hash((key, digest + ANSWERED)))
        return i

    def settle(
        self, hashes: Mapping[str, str], answered: bool, listed: list[str]
    ) -> dict[str, str]:
        """Mark seen each key whose (key, hash) is held (with its detail answered, if
        ``answered``); returns the others. Once the counted keys were listed, newly seen keys
        are appended to ``listed`` for the caller to write."""
        with self.lock:
            return self._settle(hashes, answered, listed)

    def settle_counted(
        self, hashes: Mapping[str, str], answered: Mapping[str, str]
    ) -> dict[str, str] | None:
        """``settle`` for a caller that cannot write keys to the temporary table (the walk's
        thread), of ``hashes`` as they are and ``answered`` with their detail answered: the
        keys of both not marked seen, or None, with nothing marked, once the counted keys were
        listed."""
        with self.lock:
            if self.listed:
                return None
            rest = self._settle(hashes, False, []) if hashes else {}
            if answered:
                rest.update(self._settle(answered, True, []))
            return rest

    def list_counted(self) -> None:
        """From now on, seen keys are for the temporary table (``settle``'s ``listed``), and
        ``take`` gives the counted ones."""
        with self.lock:
            self.listed = True

    def _settle(
        self, hashes: Mapping[str, str], answered: bool, listed: list[str]
    ) -> dict[str, str]:
        slots, state, size = self._slots, self._state, self._size
        new = LISTED if self.listed else COUNTED
        rest: dict[str, str] = {}
        for key, digest in hashes.items():
            if answered:
                i = self._slot(key, digest, answered)
            else:  # ``_slot``'s first probe, inline: this loop runs once per listed item
                fp = hash((key, digest)) or 1
                i = fp % size
                while True:
                    found = slots[i]
                    if found == fp:
                        break
                    if not found:
                        i = self._slot(key, digest, answered) if self._answered else -1
                        break
                    i = i + 1 if i + 1 < size else 0
            if i < 0 or state[i] == GONE:
                rest[key] = digest
            elif state[i] == UNSEEN:  # else seen already: a listing named it twice
                state[i] = new
                if new == LISTED:
                    listed.append(key)
                else:
                    self.counted += 1
        return rest

    @staticmethod
    def fingerprints(key: str, digest: str) -> tuple[int, int]:
        """The fingerprints a stored row with this key and hash may be held under: as is, and
        with its detail answered. 16 bytes to keep for later, where the pair would be 200."""
        return hash((key, digest)), hash((key, digest + ANSWERED))

    def mark_listed(self, fingerprints: Iterable[int]) -> None:
        """SQL marked these rows seen, their keys in the table, before the ledger was taken
        up: a listing that names one again must not count it a second time."""
        state = self._state
        with self.lock:
            for fp in fingerprints:
                i = self._find(fp)
                if i >= 0 and state[i] == UNSEEN:
                    state[i] = LISTED

    def forget(self, fingerprints: Iterable[int]) -> None:
        """The run wrote or deleted these rows: their stored hashes are about to change."""
        state = self._state
        with self.lock:
            for fp in fingerprints:
                i = self._find(fp)
                if i >= 0:
                    if state[i] == COUNTED:
                        self.counted -= 1
                    state[i] = GONE

    def take(self, fingerprint: int) -> bool:
        """True (once) if this stored row was seen and its key is not yet in the table."""
        with self.lock:
            i = self._find(fingerprint)
            if i < 0 or self._state[i] != COUNTED:
                return False
            self._state[i] = LISTED
            self.counted -= 1
            return True
