"""The tar layer of result bundles: deterministic writing and defensive reading.

The writer produces one canonical byte form for a list of (path, bytes):
POSIX.1-2001 (pax) tar as written by Python's tarfile, regular files only,
mode 0644, owner 0, modification time 0, UTF-8 names. The reader accepts only
that form, so a change to any byte of an archive, in headers, padding or the
end-of-archive blocks too, is rejected even where the file contents still
match their digests.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from certification.errors import BundleError

TAR_FORMAT = tarfile.PAX_FORMAT
ENCODING = "utf-8"
MAX_PATH_BYTES = 1024


@dataclass(frozen=True)
class Limits:
    """Reading budgets, counted on bytes actually read rather than on header claims."""

    max_archive_bytes: int = 2 * 1024**3
    max_members: int = 10_000
    max_member_bytes: int = 512 * 1024**2
    max_total_bytes: int = 1024**3


@dataclass
class ArchiveContents:
    """Regular files by path, and the folder entries that the archive also had."""

    files: dict[str, bytes] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)


def check_member_path(name: str) -> None:
    """Raise BundleError unless `name` is a safe relative path with '/' separators."""
    if "\\" in name:
        raise BundleError("path_backslash", name)
    if name.startswith("/"):
        raise BundleError("path_absolute", name)
    parts = name.split("/")
    if ".." in parts:
        raise BundleError("path_parent", name)
    has_control = any(ord(char) < 32 or ord(char) == 127 for char in name)
    if any(part in ("", ".") for part in parts) or has_control or len(name.encode(ENCODING, "surrogatepass")) > MAX_PATH_BYTES:
        raise BundleError("path_invalid", name)


def path_key(name: str) -> str:
    """Return the form under which two paths count as the same on any file system."""
    return unicodedata.normalize("NFC", name).casefold()


def canonical_tarinfo(name: str, size: int, is_folder: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if is_folder else size
    info.type = tarfile.DIRTYPE if is_folder else tarfile.REGTYPE
    info.mode = 0o755 if is_folder else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class ArchiveWriter:
    """Writes regular files into the canonical tar form; close() writes the end blocks."""

    def __init__(self, stream: BinaryIO):
        self._tar = tarfile.open(fileobj=stream, mode="w", format=TAR_FORMAT, encoding=ENCODING, errors="strict")

    def add(self, name: str, data: bytes) -> None:
        check_member_path(name)
        self._tar.addfile(canonical_tarinfo(name, len(data)), io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


class _CountingReader:
    """A read-only file wrapper that stops once more than `limit` bytes were read."""

    def __init__(self, raw: BinaryIO, limit: int):
        self._raw = raw
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise BundleError("archive_too_large", self.count)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def read_archive(path: Path, limits: Limits = Limits()) -> ArchiveContents:
    """Read every member of a canonical bundle archive into memory, checking each one."""
    try:
        raw = open(path, "rb")
    except OSError as error:
        raise BundleError("archive_unreadable", f"{path}: {error.strerror}") from None
    with raw:
        if not _is_regular_file(raw):
            raise BundleError("archive_unreadable", str(path))
        reader = _CountingReader(raw, limits.max_archive_bytes)
        entries = _read_entries(reader, limits)
        _check_canonical(reader, entries)
    return _collect(entries)


def _is_regular_file(raw: BinaryIO) -> bool:
    return stat.S_ISREG(os.fstat(raw.fileno()).st_mode)


def _read_entries(reader: _CountingReader, limits: Limits) -> list[tuple[tarfile.TarInfo, bytes]]:
    entries = []
    seen: dict[str, str] = {}
    total = 0
    try:
        with tarfile.open(fileobj=reader, mode="r:", encoding=ENCODING, errors="strict") as tar:
            for info in _iter_infos(tar, limits):
                _check_member(info, seen, limits)
                data = _read_data(tar, info)
                total += len(data)
                if total > limits.max_total_bytes:
                    raise BundleError("archive_too_large", total)
                entries.append((info, data))
    except (tarfile.TarError, EOFError, UnicodeError, OverflowError, ValueError) as error:
        raise BundleError("archive_invalid", str(error) or type(error).__name__) from None
    return entries


def _iter_infos(tar: tarfile.TarFile, limits: Limits) -> Iterator[tarfile.TarInfo]:
    count = 0
    while (info := tar.next()) is not None:
        count += 1
        if count > limits.max_members:
            raise BundleError("member_count_exceeded", count)
        yield info


def _check_member(info: tarfile.TarInfo, seen: dict[str, str], limits: Limits) -> None:
    _check_member_type(info)
    check_member_path(info.name)
    key = path_key(info.name)
    if key in seen:
        raise BundleError("path_duplicate", f"{seen[key]!r} and {info.name!r}")
    seen[key] = info.name
    if info.size > limits.max_member_bytes:
        raise BundleError("member_too_large", f"{info.name} ({info.size} bytes)")


def _check_member_type(info: tarfile.TarInfo) -> None:
    if info.type in (tarfile.REGTYPE, tarfile.DIRTYPE):
        return
    if info.issym() or info.islnk():
        raise BundleError("member_link", f"{info.name} -> {info.linkname}")
    if info.ischr() or info.isblk() or info.isfifo():
        raise BundleError("member_special", info.name)
    raise BundleError("member_type_unsupported", f"{info.name} (type {info.type!r})")


def _read_data(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    if info.isdir():
        return b""
    stream = tar.extractfile(info)
    data = stream.read(info.size) if stream is not None else b""
    if len(data) != info.size:
        raise BundleError("member_truncated", f"{info.name}: {len(data)} of {info.size} bytes")
    return data


def _check_canonical(reader: _CountingReader, entries: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """Compare every header, padding and end block with the bytes the writer would produce."""
    position = 0
    for info, data in entries:
        expected = canonical_tarinfo(info.name, len(data), info.isdir()).tobuf(TAR_FORMAT, ENCODING, "strict")
        if info.offset != position or _read_at(reader, position, len(expected)) != expected:
            raise BundleError("archive_not_canonical", position)
        data_end = position + len(expected) + len(data)
        position += len(expected) + _round_up(len(data), tarfile.BLOCKSIZE)
        if _read_at(reader, data_end, position - data_end).count(0) != position - data_end:
            raise BundleError("archive_not_canonical", data_end)
    _check_end_blocks(reader, position)


def _check_end_blocks(reader: _CountingReader, position: int) -> None:
    expected_length = _round_up(position + 2 * tarfile.BLOCKSIZE, tarfile.RECORDSIZE)
    length = reader.seek(0, io.SEEK_END)
    tail = _read_at(reader, position, expected_length - position)
    if length != expected_length or tail.count(0) != len(tail):
        raise BundleError("archive_not_canonical", position)


def _read_at(reader: _CountingReader, offset: int, size: int) -> bytes:
    reader.seek(offset)
    return reader.read(size)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _collect(entries: list[tuple[tarfile.TarInfo, bytes]]) -> ArchiveContents:
    contents = ArchiveContents()
    for info, data in entries:
        if info.isdir():
            contents.folders.add(info.name)
        else:
            contents.files[info.name] = data
    return contents
