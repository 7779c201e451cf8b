"""Reading import files as a stream of records, never the whole file at once.

A record is `(agent, metric, observed_at, value, source)` as found in the file (strings for
CSV, JSON values for JSON), None for a blank CSV line, or a RowError for a JSON item that is
not an object. `tell()` says how many bytes of
the file were read so far, for the progress bar.
"""

import codecs
import contextlib
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from metrics.import_checking import RowError

REQUIRED = ("agent", "metric", "observed_at", "value")
OPTIONAL = ("source",)
_CHUNK = 1024 * 1024


class FatalImportError(Exception):
    """The file as a whole cannot be read: the batch fails with this message."""


@dataclass(frozen=True)
class Columns:
    """Where the header puts each column (0-based); `count` is how many columns it names."""

    agent: int
    metric: int
    observed_at: int
    value: int
    source: int | None
    count: int


class CsvRecords:
    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        self.reader = csv.reader(self.text)

    def tell(self) -> int:
        return self.raw.tell()

    def __iter__(self) -> Iterator[tuple | None]:
        with self.readable():
            yield from self._records()

    @contextlib.contextmanager
    def readable(self):
        """Decoding and CSV errors become FatalImportError with a message for people."""
        try:
            yield
        except UnicodeDecodeError as exc:
            raise FatalImportError(
                f"The file is not UTF-8 text (near byte {self.tell():,}: {exc.reason}). "
                "Save it as CSV UTF-8 and upload it again.") from None
        except csv.Error as exc:
            raise FatalImportError(f"The file is not valid CSV: {exc}.") from None

    def columns(self) -> "Columns":
        """Read the header line: where each column is (FatalImportError if one is missing)."""
        header = next(self.reader, None)
        if header is None:
            raise FatalImportError("The file is empty: expected a header line with the columns "
                                   + ", ".join(REQUIRED + OPTIONAL) + ".")
        names = [name.strip().lower() for name in header]
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise FatalImportError(
                f"The header has no column {', '.join(repr(m) for m in missing)}. Expected "
                f"{', '.join(REQUIRED)} and optionally source; found "
                f"{', '.join(repr(n) for n in names) or 'nothing'}.")
        ia, im, it, iv = (names.index(name) for name in REQUIRED)
        return Columns(ia, im, it, iv, names.index("source") if "source" in names else None,
                       len(names))

    def _records(self) -> Iterator[tuple | None]:
        reader, columns = self.reader, self.columns()
        ia, im, it, iv, isrc = (columns.agent, columns.metric, columns.observed_at,
                                columns.value, columns.source)
        width = max(ia, im, it, iv, isrc or 0) + 1
        for row in reader:
            if len(row) >= width:  # the common case, kept tight
                yield (row[ia], row[im], row[it], row[iv],
                       row[isrc] if isrc is not None else "")
            elif not row:
                yield None
            else:  # a short row: the missing cells are None, and reported as missing
                row = row + [None] * (width - len(row))
                yield (row[ia], row[im], row[it], row[iv],
                       row[isrc] if isrc is not None else "")


class JsonRecords:
    """A JSON array of objects, or `{"observations": [...]}`, decoded one item at a time
    (json.JSONDecoder.raw_decode on a sliding buffer), so memory stays at one chunk."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.read_bytes = 0
        self.decoder = json.JSONDecoder()
        self.utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self.buffer, self.pos, self.eof = "", 0, False

    def tell(self) -> int:
        return self.read_bytes

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.raw.read(_CHUNK)
        self.read_bytes += len(chunk)
        try:
            text = self.utf8.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise FatalImportError(f"The file is not UTF-8 text (near byte "
                                   f"{self.read_bytes:,}: {exc.reason}).") from None
        self.eof = not chunk
        self.buffer = self.buffer[self.pos:] + text
        self.pos = 0
        return True

    def _peek(self) -> str:
        """The next non-blank character ('' at the end of the file)."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._more():
                return ""

    def _value(self, what: str):
        self._peek()  # raw_decode does not skip blanks
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as exc:
                if self._more():
                    continue
                raise FatalImportError(f"The file is not valid JSON: {exc.msg} in {what}.") \
                    from None
            if end < len(self.buffer) or self.eof or not self._more():
                self.pos = end
                return value
            # the value reached the end of the buffer (a number may go on): decode again

    def _expect(self, chars: str, where: str) -> str:
        found = self._peek()
        if found == "" or found not in chars:
            shown = repr(found) if found else "the end of the file"
            raise FatalImportError(f"The file is not valid JSON: expected "
                                   f"{' or '.join(repr(c) for c in chars)} {where}, found {shown}.")
        self.pos += 1
        return found

    def __iter__(self) -> Iterator[tuple]:
        first = self._peek()
        if first == "{":
            self._seek_observations()
        elif first != "[":
            raise FatalImportError('The file must be a JSON array of observations, or '
                                   '{"observations": [...]}.')
        self.pos += 1
        index = 0
        if self._peek() == "]":
            return
        while True:
            index += 1
            item = self._value(f"item {index}")
            if isinstance(item, dict):
                yield (item.get("agent"), item.get("metric"), item.get("observed_at"),
                       item.get("value"), item.get("source", ""))
            else:
                yield RowError("", f"Each observation must be a JSON object with agent, "
                                   f"metric, observed_at and value; found "
                                   f"{type(item).__name__}.")
            if self._expect(",]", f"after item {index}") == "]":
                return

    def _seek_observations(self) -> None:
        self.pos += 1
        while True:
            if self._peek() == "}":
                raise FatalImportError('The JSON object has no "observations" list.')
            key = self._value("a key")
            self._expect(":", f"after the key {key!r}")
            if key == "observations":
                if self._peek() != "[":
                    raise FatalImportError('"observations" must be a list of objects.')
                return
            self._value(f"the value of {key!r}")
            if self._expect(",}", f"after the value of {key!r}") == "}":
                raise FatalImportError('The JSON object has no "observations" list.')


def records(raw: IO[bytes], fmt: str):
    return CsvRecords(raw) if fmt == "csv" else JsonRecords(raw)
