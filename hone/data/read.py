"""Readers: JSONL, JSON array, CSV/TSV, Parquet and plain text -> raw rows with file:line.

Everything is streamed (line by line, or Parquet record batches), so reading a 1 GB file
does not need 1 GB of RAM.  Problems (bad JSON, bad encoding, missing columns) are appended
to a caller-supplied list with file, line and field, and reading goes on where it can, so
the user sees every problem at once.  Decoding is strict UTF-8 (a BOM is tolerated);
cp1252 / latin-1 only when the caller asks for that encoding.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hone.data.records import Problem
from hone.errors import DataError

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "txt")
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
        ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".text": "txt", ".md": "txt"}
_MAX_JSON_ELEMENT = 64 << 20  # characters one JSON-array element may span before we give up


@dataclass
class RawRow:
    obj: Any
    source: str
    line: int
    tabular: bool = False  # CSV/TSV/Parquet: every row has the header's columns


def json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-empty line of a JSONL file; bad JSON is a DataError with file:line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "txt"
    fmt = _EXT.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                        f"pass --format ({', '.join(FORMATS)})")
    if fmt == "json":  # a .json file may hold JSON lines; look at its first character
        with open(path, "rb") as fh:
            head = fh.read(4096)
        wide = _wide_codec(head, "utf-8")
        if wide:
            head = head.decode(wide, errors="ignore").encode()
        head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        fmt = "json" if head.startswith(b"[") else "jsonl"
    return fmt


def _wide_codec(head: bytes, encoding: str) -> str | None:
    """The codec of a UTF-16 / UTF-32 file (Excel's "Unicode text" export): from its byte-order mark, or as given."""
    enc = encoding.lower().replace("_", "-")
    if enc.startswith(("utf-16", "utf-32", "utf16", "utf32")):
        return encoding
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return None


class _Lines:
    """Decoded lines of a file with their 1-based numbers; bad bytes become problems."""

    def __init__(self, path: Path, encoding: str, problems: list[Problem], keepends: bool = False):
        self.path, self.encoding, self.problems, self.keepends = path, encoding, problems, keepends
        self.lineno = 0

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as fh:  # (one open: the byte-order mark is peeked, then read from the start)
            wide = _wide_codec(fh.read(4), self.encoding)
            if not wide:
                fh.seek(0)
                yield from self._narrow(fh)
        if wide:
            yield from self._wide(wide)

    def _narrow(self, fh) -> Iterator[str]:
        """Lines of a file in a byte-oriented encoding (UTF-8, cp1252, ...), decoded one at a time."""
        enc = self.encoding.lower().replace("_", "-")
        for raw in fh:
            self.lineno += 1
            if self.lineno == 1:
                if b"\x00" in raw and enc in ("utf-8", "utf8"):
                    self._bad("the file holds NUL bytes: UTF-16 without a byte-order mark? pass --encoding "
                              "utf-16-le (or utf-16-be)")
                    return
                if raw.startswith(b"\xef\xbb\xbf") and enc in ("utf-8", "utf8"):
                    raw = raw[3:]
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as e:
                bad = raw[e.start:e.start + 1].hex()
                hint = "" if enc not in ("utf-8", "utf8") else \
                    " (if the file is Windows-1252 or Latin-1, pass --encoding cp1252 or --encoding latin-1)"
                self._bad(f"not valid {self.encoding}: byte 0x{bad} at column {e.start + 1}{hint}")
                continue
            except LookupError:
                raise DataError(f"unknown encoding {self.encoding!r}") from None
            if not self.keepends:
                text = text.rstrip("\r\n")
            elif text.endswith("\r\n"):
                text = text[:-2] + "\n"
            yield text

    def _wide(self, codec: str) -> Iterator[str]:
        """Lines of a UTF-16 / UTF-32 file, decoded as a stream (its bytes cannot be split at b"\\n")."""
        try:
            with open(self.path, encoding=codec, newline="") as fh:
                for text in fh:
                    self.lineno += 1
                    if self.lineno == 1:
                        text = text.removeprefix("\ufeff")
                    if not self.keepends:
                        text = text.rstrip("\r\n")
                    elif text.endswith("\r\n"):
                        text = text[:-2] + "\n"
                    yield text
        except UnicodeDecodeError as e:
            self.lineno += 1
            self._bad(f"not valid {codec}: {e.reason}")
        except LookupError:
            raise DataError(f"unknown encoding {self.encoding!r}") from None

    def _bad(self, msg: str) -> None:
        self.problems.append(Problem("error", str(self.path), self.lineno, "(encoding)", msg))


def _jsonl(path: Path, encoding: str, problems: list[Problem]) -> Iterator[RawRow]:
    lines = _Lines(path, encoding, problems)
    for text in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            at = "" if e.msg.endswith(" at") else " at"  # ("Unterminated string starting at" ...)
            problems.append(Problem("error", str(path), lines.lineno, "(json)",
                                    f"invalid JSON: {e.msg}{at} column {e.colno}"))
            continue
        yield RawRow(obj, str(path), lines.lineno)


def _may_close(line: str) -> bool:
    """Whether a line can end a JSON value that spans lines: one ending (or starting) with a closing bracket.  A
    string cannot hold a raw line break, so a value's last line always ends in ``}`` or ``]``, or starts with one
    (``}, {`` between elements)."""
    s = line.strip()
    return bool(s) and (s[-1] in "}]" or s.endswith(("},", "],")) or s[0] in "}]")


def _json_array(path: Path, encoding: str, problems: list[Problem]) -> Iterator[RawRow]:
    """Stream the elements of a top-level JSON array without loading the whole file.

    Lines are appended to a buffer until the next element decodes.  JSON strings cannot
    contain raw newlines, so an error before the end of the buffered text is final; one at
    the very end only means the element continues on the next line.
    """
    dec = json.JSONDecoder()
    lines = _Lines(path, encoding, problems, keepends=True)
    buf, buf_line, state = "", 1, "start"  # start -> elem -> sep -> ... -> end
    tried = 0  # the buffer's length at the last decoding that found the element incomplete
    it = iter(lines)

    def fail(msg: str, text: str, offset: int) -> None:  # (not reading buf itself: as a closure's variable it
        # would lose CPython's in-place `+=`, and appending each line copied the whole buffer)
        problems.append(Problem("error", str(path), buf_line + text.count("\n", 0, offset), "(json)", msg))

    while True:
        chunk = next(it, None)
        if chunk is None and (not buf or buf.isspace()):
            if state != "end":
                fail("invalid JSON: the array is not closed with ']'" if state != "start"
                     else "invalid JSON: expected a JSON array", buf, len(buf))
            return
        if chunk is not None:
            if not buf or buf.isspace():
                buf, buf_line = "", lines.lineno
            buf += chunk
        while True:
            stripped = len(buf) - len(buf.lstrip())
            if stripped:
                buf_line += buf.count("\n", 0, stripped)
                buf = buf[stripped:]
            if not buf:
                break
            if state == "start":
                if buf[0] != "[":
                    fail("invalid JSON: a .json file must hold one array of objects (or use .jsonl)", buf, 0)
                    return
                buf, state = buf[1:], "elem"
            elif state == "sep":
                if buf[0] == ",":
                    buf, state = buf[1:], "elem"
                elif buf[0] == "]":
                    buf, state = buf[1:], "end"
                else:
                    fail("invalid JSON: expected ',' or ']' between array elements", buf, 0)
                    return
            elif state == "end":
                fail("invalid JSON: extra data after the closing ']'", buf, 0)
                return
            else:  # elem
                if buf[0] == "]":
                    buf, state = buf[1:], "end"
                    continue
                # decoding the buffer again after every line of an element spanning lines was quadratic (29 s for
                # 740 kB): try where a line can close it, and once the buffer has doubled since the last try
                if chunk is not None and len(buf) <= _MAX_JSON_ELEMENT and not (
                        _may_close(chunk) and len(buf) >= 2 * tried):
                    break
                try:
                    obj, end = dec.raw_decode(buf)
                except json.JSONDecodeError as e:
                    if e.pos < len(buf.rstrip()) or chunk is None or len(buf) > _MAX_JSON_ELEMENT:
                        fail(f"invalid JSON: {e.msg}", buf, e.pos)
                        return
                    tried = len(buf)
                    break  # element continues on the next line
                tried = 0
                yield RawRow(obj, str(path), buf_line)
                buf_line += buf.count("\n", 0, end)
                buf, state = buf[end:], "sep"
        if chunk is None:
            if state != "end":
                fail("invalid JSON: the array is not closed with ']'", buf, len(buf))
            return


# a support export's field may be a whole e-mail thread: csv's default limit (131,072 characters) stopped reading
csv.field_size_limit(2**31 - 1)


def _csv(path: Path, encoding: str, problems: list[Problem], delimiter: str) -> Iterator[RawRow]:
    lines = _Lines(path, encoding, problems, keepends=True)
    reader = csv.reader(iter(lines), delimiter=delimiter)
    header: list[str] | None = None
    consumed = 0
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            problems.append(Problem("error", str(path), start, "(csv)", f"malformed CSV: {e}"))
            return
        consumed = lines.lineno
        if not row or all(not c.strip() for c in row):
            continue
        if delimiter == "\t" and consumed > start:  # TSV exports seldom quote: a stray " joins the lines below
            problems.append(Problem("warning", str(path), start, "(row)",
                                    f"one row spans lines {start}-{consumed}: a quoted field with line breaks, or a "
                                    "stray double quote that joined the lines; check these lines"))
        if header is None:
            header = [h.strip() for h in row]
            if len(set(header)) != len(header):
                dup = next(h for h in header if header.count(h) > 1)
                problems.append(Problem("error", str(path), start, dup, "duplicate column name in the header"))
                return
            continue
        if len(row) != len(header):
            if len(row) < len(header):
                missing = header[len(row)]
                msg = f"expected {len(header)} fields, got {len(row)} (no value for column {missing!r})"
            else:
                missing, msg = "(row)", f"expected {len(header)} fields, got {len(row)}"
            problems.append(Problem("error", str(path), start, missing, msg))
            continue
        yield RawRow(dict(zip(header, row, strict=True)), str(path), start, tabular=True)


def _parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None
    n = 0
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            n += 1
            yield RawRow(row, str(path), n, tabular=True)


def _txt(path: Path, encoding: str, problems: list[Problem], mode: str) -> Iterator[RawRow]:
    if path.is_dir() or mode == "document":
        files = sorted(p for p in path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path}: no .txt documents found")
        for f in files:
            text = "\n".join(_Lines(f, encoding, problems))
            yield RawRow({"text": text}, str(f), 1)
        return
    lines = _Lines(path, encoding, problems)
    for text in lines:
        if text.strip():
            yield RawRow({"text": text}, str(path), lines.lineno)


def _map_columns(rows: Iterator[RawRow], problems: list[Problem], columns: dict[str, str],
                 multi_label_sep: str | None) -> Iterator[RawRow]:
    """Rename user columns to hone's field names (``columns``: field -> user column); split multi-labels."""
    checked = False
    for r in rows:
        if isinstance(r.obj, dict):
            if not checked:
                checked = True
                for col in columns.values():
                    if col not in r.obj:
                        problems.append(Problem("error", r.source, 1, col,
                                                f"column {col!r} not found; columns are: {', '.join(map(str, r.obj))}"))
                        return
            absent = [c for c in columns.values() if c not in r.obj]
            if absent:  # (the first row had it: a JSON row without it)
                problems.append(Problem("error", r.source, r.line, absent[0], f"column {absent[0]!r} missing in this "
                                        f"row; its keys are: {', '.join(map(str, r.obj))}"))
                continue
            obj = dict(r.obj)
            picked = {name: obj[col] for name, col in columns.items()}
            for col in columns.values():
                obj.pop(col, None)
            obj.update(picked)
            if multi_label_sep and isinstance(obj.get("label"), str):
                obj["label"] = [x.strip() for x in obj["label"].split(multi_label_sep)]
            r = RawRow(obj, r.source, r.line, r.tabular)
        yield r


def read_rows(path: str | Path, problems: list[Problem], *, fmt: str = "auto", encoding: str = "utf-8",
              txt_mode: str = "line", text_column: str | None = None, label_column: str | None = None,
              multi_label_sep: str | None = None, prompt_column: str | None = None,
              completion_column: str | None = None) -> Iterator[RawRow]:
    """Stream the raw rows of one file (or a folder of .txt documents).  The ``*_column`` arguments name the
    user's columns (fields) that hold hone's ``text`` / ``label`` (classification) or ``prompt`` / ``completion``
    (a ticket and its summary, a question and its answer)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        rows = _jsonl(path, encoding, problems)
    elif fmt == "json":
        rows = _json_array(path, encoding, problems)
    elif fmt in ("csv", "tsv"):
        rows = _csv(path, encoding, problems, "," if fmt == "csv" else "\t")
    elif fmt == "parquet":
        rows = _parquet(path)
    elif fmt == "txt":
        rows = _txt(path, encoding, problems, txt_mode)
    else:
        raise DataError(f"{path}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    columns = {"text": text_column, "label": label_column, "prompt": prompt_column, "completion": completion_column}
    return _map_columns(rows, problems, {k: v for k, v in columns.items() if v}, multi_label_sep)


def columns_present(path: str | Path, columns: dict[str, str | None]) -> dict[str, str]:
    """The entries of ``columns`` (a ``read_rows`` argument -> a user column) whose column the file's first row has:
    a trained artifact's column names apply to files written like its training data, hone's own names to others."""
    first = next(iter(read_rows(path, [])), None)
    keys = set(first.obj) if first is not None and isinstance(first.obj, dict) else set()
    return {arg: col for arg, col in columns.items() if col and col in keys}
