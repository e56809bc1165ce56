"""The inbox folder: which files may be read, opening them safely, and their rows.

Security: only regular files under the configured folder are read. Glob patterns and names with ``..`` or an
absolute path are refused; every match is resolved (symlinks followed) and must still lie inside the folder;
the final open uses ``O_NOFOLLOW`` and checks it got the same regular file. Memory: CSV rows come from a
streaming ``csv.reader``; .xlsx rows from openpyxl's read-only mode (the sheet XML is streamed; the shared
strings table is held, as Excel itself does).
"""
from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import io
import os
import stat
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from orderhub.connectors.common.errors import ConfigError

CHUNK = 1 << 20
csv.field_size_limit(1 << 20)  # one cell up to 1 MiB; the default 128 KiB is below some pasted remarks


class FileRefused(Exception):
    """A file is not read: outside the folder, not a regular file, or unreadable. ``code`` is the reason."""

    def __init__(self, code: str, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.code = code
        self.name = name


class FileFormatError(Exception):
    """The whole file cannot be parsed (bad encoding, broken .xlsx, unsupported format)."""

    def __init__(self, code: str, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.row = row


def check_relative(name: str, *, key: str = "glob") -> str:
    """Refuse an absolute name or one with a ``..`` component (also written with backslashes)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("must be a non-empty relative name", key=key)
    p = PurePosixPath(name.replace("\\", "/"))
    drive = len(name) > 1 and name[0].isalpha() and name[1] == ":" and (len(name) == 2 or name[2] in "/\\")
    if p.is_absolute() or name.startswith(("/", "\\")) or drive:
        raise ConfigError(f"{name!r} is absolute; names are relative to the folder in `path`", key=key)
    if ".." in p.parts:
        raise ConfigError(f"{name!r} contains '..'; files outside the folder in `path` are never read", key=key)
    return name


@dataclass(frozen=True)
class InboxFile:
    """A file found in the folder. ``name`` is its path relative to the folder (POSIX separators)."""

    name: str
    path: Path


class Inbox:
    """The folder order files are dropped into (setting ``path``), with its glob patterns."""

    def __init__(self, root: str | os.PathLike[str], patterns: list[str] | None = None,
                 ignore: list[str] | None = None, min_age_seconds: float = 0) -> None:
        try:
            self.root = Path(root).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            raise ConfigError(f"folder {str(root)!r} does not exist", key="path") from None
        if not self.root.is_dir():
            raise ConfigError(f"{str(root)!r} is not a folder", key="path")
        self.patterns = [check_relative(p, key="glob") for p in (patterns or ["*.csv", "*.xlsx", "*.xls"])]
        self.ignore = list(ignore if ignore is not None else ["~$*", ".*"])
        self.min_age_seconds = float(min_age_seconds)

    def resolve(self, name: str) -> Path:
        """The real path of a file named by a user (relative to the folder): :class:`ConfigError` for ``..`` or
        an absolute name, :class:`FileRefused` when it resolves outside the folder."""
        check_relative(name, key="file")
        return self._inside(self.root / name, name)

    def _inside(self, path: Path, name: str) -> Path:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise FileRefused("unreadable_file", name, f"cannot be resolved ({exc.__class__.__name__})") from None
        if not real.is_relative_to(self.root):
            raise FileRefused("outside_folder", name, "resolves outside the folder (symlink?); not read")
        return real

    def files(self) -> Iterator[InboxFile | FileRefused]:
        """Matching files sorted by name; a match that may not be read comes as :class:`FileRefused`."""
        seen: set[str] = set()
        now = time.time()
        found: list[Path] = []
        for pattern in self.patterns:
            found.extend(self.root.glob(pattern))
        for p in sorted(set(found)):
            name = p.relative_to(self.root).as_posix()
            base = p.name
            if name in seen or any(fnmatch.fnmatch(base, pat) for pat in self.ignore):
                continue
            seen.add(name)
            try:
                real = self._inside(p, name)
            except FileRefused as refused:
                yield refused
                continue
            try:
                st = real.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):  # a folder matching the glob, a FIFO, a device: never opened
                yield FileRefused("unreadable_file", name, "not a regular file (a folder, pipe or device); not read")
                continue
            if self.min_age_seconds and now - st.st_mtime < self.min_age_seconds:
                continue  # still being copied in; next run takes it
            yield InboxFile(name, real)

    def open(self, f: InboxFile) -> IO[bytes]:
        """Open for reading without following a symlink swapped in since :meth:`files`; regular files only."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(f.path, flags)
        except OSError as exc:
            raise FileRefused("unreadable_file", f.name, f"cannot be opened ({exc.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FileRefused("unreadable_file", f.name, "not a regular file")
        return os.fdopen(fd, "rb")


def sha256_of(fh: IO[bytes]) -> str:
    """SHA-256 of the whole file, read in 1 MiB chunks; leaves the position at the start."""
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        h.update(chunk)
    fh.seek(0)
    return h.hexdigest()


def sniff_format(fh: IO[bytes], name: str) -> str:
    """``csv`` | ``xlsx`` | ``xls``, from the first bytes, not the file name: a renamed file is still read right."""
    head = fh.read(8)
    fh.seek(0)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    return "csv"


# --- CSV --------------------------------------------------------------------------------------------------------
def csv_encodings(fh: IO[bytes], configured: str = "auto") -> list[str]:
    """Encodings to try, in order. Auto: UTF-16 when it has a BOM (Excel "Unicode text"), else strict UTF-8 (with
    or without BOM), then GB18030 (a superset of GBK/GB2312, what Excel saves as "CSV" on Chinese Windows)."""
    if configured and configured != "auto":
        try:
            codecs.lookup(configured)
        except LookupError:
            raise ConfigError(f"unknown encoding {configured!r}", key="encoding") from None
        return [configured]
    head = fh.read(4)
    fh.seek(0)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ["utf-16"]
    return ["utf-8-sig", "gb18030"]


def _delimiter(sample: str, configured: str) -> str:
    if configured and configured != "auto":
        return {"tab": "\t", "\\t": "\t"}.get(configured, configured)
    counts = {d: sample.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def csv_rows(fh: IO[bytes], encoding: str, delimiter: str = "auto") -> Iterator[tuple[str, int, list[Any]]]:
    """Rows of a CSV file as (sheet '', row number, cells). The row number is the record number, as Excel shows
    it. A decoding error raises UnicodeDecodeError (the caller tries the next encoding); a broken quote raises
    :class:`FileFormatError`."""
    fh.seek(0)
    sample = fh.read(64 * 1024).decode(encoding, errors="ignore")
    fh.seek(0)
    text = io.TextIOWrapper(fh, encoding=encoding, errors="strict", newline="")
    try:
        reader = csv.reader(text, delimiter=_delimiter(sample, delimiter), strict=False)
        n = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise FileFormatError("bad_csv", f"row {n + 1}: {exc}", row=n + 1) from None
            n += 1
            if n == 1 and row and row[0].startswith("\ufeff"):
                row[0] = row[0][1:]
            yield "", n, row
    finally:
        text.detach()  # the caller owns the binary file


# --- XLSX -------------------------------------------------------------------------------------------------------
def xlsx_rows(fh: IO[bytes], sheets: list[str] | None = None) -> Iterator[tuple[str, int, list[Any]]]:
    """Rows of every visible sheet (or the named ``sheets``) as (sheet, row number, cells), streamed with
    openpyxl read-only mode. Formulas give their cached values (``data_only``)."""
    import openpyxl  # imported here: CSV-only users do not pay for it

    fh.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no default style", "unknown extension": noise from WPS files
        try:
            wb = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # zipfile.BadZipFile, KeyError, XML errors: all mean "not a readable .xlsx"
            raise FileFormatError("unreadable_file", f"not a readable .xlsx file ({exc.__class__.__name__})") \
                from None
    try:
        names = wb.sheetnames
        if sheets:
            missing = [s for s in sheets if s not in names]
            if missing:
                raise FileFormatError("no_header_row", f"sheet(s) {missing} not found; sheets: {names}")
            names = list(sheets)
        for name in names:
            ws = wb[name]
            if not sheets and getattr(ws, "sheet_state", "visible") != "visible":
                continue
            ws.reset_dimensions()  # WPS/online tools write wrong <dimension> refs; read what is there
            try:
                for n, row in enumerate(ws.iter_rows(values_only=True), start=1):
                    yield name, n, list(row)
            except FileFormatError:
                raise
            except Exception as exc:
                raise FileFormatError("unreadable_file", f"sheet {name!r}: broken XML ({exc.__class__.__name__})") \
                    from None
    finally:
        wb.close()
