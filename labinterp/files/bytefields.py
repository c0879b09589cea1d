"""Fields of a block of CSV lines located with numpy on the raw bytes: no Python string per field.

Only for the plain case: complete lines, no quote, no NUL, no lone CR, every line with the
header's number of delimiters. A field is known by the little-endian 64-bit words that start at
it, masked to its length; a file repeats few distinct spellings, so each column keeps a table of
those it has seen, looked up by key and checked word by word, and each new spelling is decoded
once. Values are read by digit arithmetic instead: they need not repeat.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from labinterp.core.columnar import Coded, Numbers

MAX_WORDS = 4  # fields up to 32 bytes are known by their words; longer ones through Python strings
MAX_SPELLINGS = 4096  # a column's table is emptied beyond this: a column of ever new texts is coded block by block
MAX_PLAIN_WORDS = 2  # values up to 16 bytes are read by digit arithmetic
MAX_PLAIN_DIGITS = 15  # a mantissa below 10**15 < 2**53 is exact
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
# key = sum of word k times odd constant k (wrapping): trailing empty words add nothing, so a
# text has one key whatever the longest field of its block; equal keys are then checked word by word
_MIX = np.array([1, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)

_SLOT_MULTIPLIER = np.uint64(0xFF51AFD7ED558CCD)  # Fibonacci-style hashing: the top bits of key x odd
_SLOT_BITS_MIN = 6

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Words = npt.NDArray[np.uint64]


def plain(block: bytes) -> bool:
    """Whether the block can be read here: no quote, no NUL, every CR part of a CRLF."""
    return b'"' not in block and b"\0" not in block and (
        b"\r" not in block or block.count(b"\r") == block.count(b"\r\n"))


class Spellings:
    """The distinct texts of one column seen so far in a file, kept sorted by key."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.keys = np.zeros(0, dtype=np.uint64)
        self.codes = np.zeros(0, dtype=np.int64)  # code (index into texts) of each sorted entry
        self.word_count = np.zeros(0, dtype=np.int64)  # how many words each entry's text takes
        self.words = [np.zeros(0, dtype=np.uint64) for _ in range(MAX_WORDS)]
        # direct-mapped index in front of the sorted keys: slot -> (key, entry); an entry whose slot
        # another took is found through the sorted keys instead
        self._shift = np.uint64(64 - _SLOT_BITS_MIN)
        self._slot_key = np.zeros(1 << _SLOT_BITS_MIN, dtype=np.uint64)
        self._slot_entry = np.full(1 << _SLOT_BITS_MIN, -1, dtype=np.int64)

    def look_up(self, key: Words, words: list[Words]) -> tuple[IntArray, BoolArray]:
        """Each row's code, and which rows were found. One word: the key is the text (an entry of
        one word has key == word). More: every word is compared."""
        if not len(self.keys):
            return np.full(len(key), -1, dtype=np.int64), np.zeros(len(key), dtype=bool)
        slot = (key * _SLOT_MULTIPLIER) >> self._shift
        at = self._slot_entry[slot]
        missed = np.flatnonzero((at < 0) | (self._slot_key[slot] != key))
        if len(missed):
            at[missed] = np.minimum(np.searchsorted(self.keys, key[missed]), len(self.keys) - 1)
        found = (self.keys[at] == key) & (self.word_count[at] <= len(words))
        if len(words) > 1:
            for k, word in enumerate(words):
                found &= self.words[k][at] == word
        return np.where(found, self.codes[at], -1), found

    def add(self, key: Words, words: list[Words], texts: list[str]) -> None:
        if len(self.texts) + len(texts) > MAX_SPELLINGS:
            self.__init__()  # type: ignore[misc]
        codes = np.arange(len(self.texts), len(self.texts) + len(texts), dtype=np.int64)
        self.texts = self.texts + texts  # a new list: Coded objects handed out keep theirs
        used = np.zeros(len(key), dtype=np.int64)
        for k, word in enumerate(words):
            used = np.where(word != 0, k + 1, used)
        padded = [*words, *[np.zeros(len(key), dtype=np.uint64)] * (MAX_WORDS - len(words))]
        keys = np.concatenate([self.keys, key])
        order = np.argsort(keys, kind="stable")
        self.keys, self.codes = keys[order], np.concatenate([self.codes, codes])[order]
        self.word_count = np.concatenate([self.word_count, used])[order]
        self.words = [np.concatenate([mine, new])[order] for mine, new in zip(self.words, padded, strict=True)]
        bits = max(_SLOT_BITS_MIN, int(len(self.keys)).bit_length() + 2)  # at most a quarter full
        self._shift = np.uint64(64 - bits)
        slots = (self.keys * _SLOT_MULTIPLIER) >> self._shift
        taken, entry = np.unique(slots, return_index=True)  # first entry of each slot
        self._slot_key = np.zeros(1 << bits, dtype=np.uint64)
        self._slot_entry = np.full(1 << bits, -1, dtype=np.int64)
        self._slot_key[taken], self._slot_entry[taken] = self.keys[entry], entry


class ByteFields:
    """Where each field of each line starts and how long it is. Not `regular` when some line does
    not have exactly `width` fields (the general reader then reads and reports it)."""

    def __init__(self, block: bytes, separator: bytes, width: int):
        self.block = block
        padded = np.frombuffer(block + bytes(8 * MAX_WORDS + 8), dtype=np.uint8)
        raw = padded[:len(block)]
        delimiters = np.flatnonzero((raw == separator[0]) | (raw == 10))
        self.count = len(delimiters) // width
        self.regular = len(delimiters) == self.count * width
        if not self.regular:
            return
        grid = delimiters.reshape(self.count, width)
        line_feed = raw[grid] == 10
        self.regular = bool(line_feed[:, -1].all()) and not line_feed[:, :-1].any()
        if not self.regular:
            return
        ends = grid[:, -1]
        self.line_start = np.empty(self.count, dtype=np.int64)
        self.line_start[:1] = 0
        self.line_start[1:] = ends[:-1] + 1
        self.start = np.empty((self.count, width), dtype=np.int64)
        self.start[:, 0] = self.line_start
        self.start[:, 1:] = grid[:, :-1] + 1
        self.length = grid - self.start
        self.length[:, -1] -= raw[np.maximum(ends - 1, 0)] == 13  # a CR before the LF ends the line too
        # words[k]: the 8 bytes from offset k, little-endian (the padding keeps every read in bounds)
        self.words = as_strided(padded, shape=(len(block) + 8 * MAX_WORDS, 8), strides=(1, 1)).view("<u8")[:, 0]

    def limit(self, rows: int) -> None:
        """Keep the first `rows` lines only (line_start keeps every line, to tell where the rest begins)."""
        self.count = rows
        self.start, self.length = self.start[:rows], self.length[:rows]

    def raw(self, column: int, rows: list[int]) -> list[bytes]:
        """Several rows' fields as written (a plain field needs no quoting)."""
        starts = self.start[rows, column]
        block = self.block
        return [block[a:b] for a, b in zip(starts.tolist(), (starts + self.length[rows, column]).tolist(),
                                           strict=True)]

    def texts(self, column: int, rows: list[int]) -> list[str]:
        """Several rows' fields, decoded at once (a plain field holds no line feed)."""
        pieces = self.raw(column, rows)
        return b"\n".join(pieces).decode("utf-8").split("\n") if pieces else []

    def _words(self, column: int) -> list[Words] | None:
        """Per row, the masked words covering its field (as many as the longest field needs), or
        None when a field is too long."""
        longest = int(self.length[:, column].max()) if self.count else 0
        return None if longest > 8 * MAX_WORDS else self._masked(column, longest)

    def _masked(self, column: int, longest: int) -> list[Words]:
        """Per row, the words covering the first `longest` bytes of its field, masked to its length."""
        length, start = self.length[:, column], self.start[:, column]
        if longest <= 8:
            return [self.words[start] & _MASKS[np.minimum(length, 8)]]
        return [self.words[start + 8 * k] & _MASKS[np.clip(length - 8 * k, 0, 8)]
                for k in range(-(-longest // 8))]

    def coded(self, column: int, spellings: Spellings) -> Coded:
        """The column coded against the file's table of its spellings (new ones are added)."""
        words = self._words(column)
        if words is None:
            return Coded.of(self.texts(column, list(range(self.count))))
        key = words[0]
        for k in range(1, len(words)):
            key = key + words[k] * _MIX[k]  # wrapping uint64 arithmetic
        codes, found = spellings.look_up(key, words)
        if not found.all():
            missing = np.flatnonzero(~found)
            _, first = np.unique(key[missing], return_index=True)
            rows = missing[first]
            spellings.add(key[rows], [word[rows] for word in words], self.texts(column, rows.tolist()))
            codes, found = spellings.look_up(key, words)
            if not found.all():  # two texts with one key (64-bit collision): read this column as strings
                return Coded.of(self.texts(column, list(range(self.count))))
        return Coded(codes, spellings.texts)

    def differs_from_previous(self, column: int) -> BoolArray:
        out = np.ones(self.count, dtype=bool)
        words = self._words(column)
        if words is None:
            texts = np.array(self.texts(column, list(range(self.count))), dtype=object)
            out[1:] = texts[1:] != texts[:-1]
        else:
            differs = words[0][1:] != words[0][:-1]
            for word in words[1:]:
                differs |= word[1:] != word[:-1]
            out[1:] = differs
        return out

    def empty(self, column: int) -> BoolArray:
        return self.length[:, column] == 0  # type: ignore[no-any-return]

    def numbers(self, column: int) -> Numbers:
        """Plain decimals ("4.25", "12", ".5") by digit arithmetic, exactly as float() reads them: a
        mantissa below 2**53 divided by an exact power of ten is correctly rounded. Every other text
        ("<0.5", " 4", "1e3", "HEMOLYZED") is read by the rules of Numbers.of, row by row."""
        n = self.count
        length = self.length[:, column]
        longest = min(int(length.max()) if n else 0, 8 * MAX_PLAIN_WORDS)
        words = np.stack(self._masked(column, longest), axis=1).astype("<u8", copy=False)
        chars = words.view(np.uint8).reshape(n, -1)[:, :longest]
        inside = np.arange(longest) < length[:, None]
        digit = chars - np.uint8(48)
        is_digit = (digit < 10) & inside
        is_dot = (chars == 46) & inside
        digits = is_digit.sum(axis=1)
        readable = ((is_digit | is_dot) == inside).all(axis=1) & (is_dot.sum(axis=1) <= 1) & (digits >= 1) \
            & (digits <= MAX_PLAIN_DIGITS) & (length <= longest)
        mantissa = np.zeros(n, dtype=np.int64)
        decimals = np.zeros(n, dtype=np.int64)
        after_dot = np.zeros(n, dtype=bool)
        for c in range(longest):
            d = is_digit[:, c]
            mantissa = np.where(d, mantissa * 10 + digit[:, c], mantissa)
            decimals += d & after_dot
            after_dot |= is_dot[:, c]
        out = Numbers(np.where(readable, mantissa / np.power(10.0, decimals), np.nan), np.zeros(n, dtype=np.int8),
                      np.zeros(n, dtype=bool))
        other = np.flatnonzero(~readable)
        if len(other):
            read = Numbers.of(self.texts(column, other.tolist()))
            out.value[other], out.comparator[other], out.bad[other] = read.value, read.comparator, read.bad
        return out
