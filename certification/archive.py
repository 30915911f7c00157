"""The tar layer of result bundles: deterministic writing and defensive, streaming reading.

The writer produces one canonical byte form for a list of (path, bytes):
POSIX.1-2001 (pax) tar as written by Python's tarfile, regular files only,
mode 0644, owner 0, modification time 0, UTF-8 names. The reader accepts only
that form, so a change to any byte of an archive, in headers, padding or the
end-of-archive blocks too, is rejected even where the file contents still
match their digests.

The reader makes one pass over the file and hashes every member while it
reads it, keeping only each member's offset, size and sha256. Memory use is
therefore bounded by the number of members, not by their size; `read_member`
reads one member again later and checks it against the digest of that pass.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from certification.errors import BundleError, os_error_details

TAR_FORMAT = tarfile.PAX_FORMAT
ENCODING = "utf-8"
MAX_PATH_BYTES = 1024
READ_BLOCK_BYTES = 1024 * 1024
# Members kept in memory after the pass because verification parses them.
# Each is still bounded by Limits.max_member_bytes.
KEPT_MEMBERS = frozenset({"manifest.json", "envelope.dsse.json"})
# Leading bytes of compressed or archive formats. A bundle is one plain tar
# and nothing in it is ever expanded, so such content is refused outright.
COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
}
TAR_MAGIC_OFFSET = 257


@dataclass(frozen=True)
class Limits:
    """Reading budgets, counted on bytes actually read rather than on header claims."""

    max_archive_bytes: int = 2 * 1024**3
    max_members: int = 10_000
    max_member_bytes: int = 512 * 1024**2
    max_total_bytes: int = 1024**3


@dataclass(frozen=True)
class Member:
    """Where one regular file's bytes lie in the archive, and their size and sha256 as read."""

    name: str
    offset: int
    size: int
    sha256: str


@dataclass
class ArchiveIndex:
    """The result of one verified pass: members by path, folder entries, and the kept small members."""

    path: Path
    members: dict[str, Member] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    kept: dict[str, bytes] = field(default_factory=dict)


def check_member_path(name: str) -> None:
    """Raise BundleError unless `name` is a safe relative path with '/' separators."""
    if "\\" in name:
        raise BundleError("path_backslash", name)
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
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


def archive_format(head: bytes) -> str | None:
    """Name the compressed or archive format that `head` (a file's first bytes) starts with, if any."""
    for magic, name in COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            return name
    if head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == b"ustar":
        return "tar"
    return None


class ArchiveWriter:
    """Writes regular files into the canonical tar form; close() writes the end blocks."""

    def __init__(self, stream: BinaryIO):
        self._tar = tarfile.open(fileobj=stream, mode="w", format=TAR_FORMAT, encoding=ENCODING, errors="strict")

    def add(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), io.BytesIO(data))

    def add_stream(self, name: str, size: int, stream: BinaryIO) -> None:
        """Add `size` bytes read from `stream` without holding them in memory."""
        check_member_path(name)
        self._tar.addfile(canonical_tarinfo(name, size), stream)

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
        self._add(len(data))
        return data

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer)
        self._add(count)
        return count

    def _add(self, count: int) -> None:
        self.count += count
        if self.count > self._limit:
            raise BundleError("archive_too_large", self.count)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def read_archive(path: Path, limits: Limits = Limits()) -> ArchiveIndex:
    """Check every member of a canonical bundle archive in one pass; return where each one lies."""
    try:
        raw = open(path, "rb", buffering=0)
    except OSError as error:
        raise BundleError("archive_unreadable", str(path), **os_error_details(error)) from None
    with raw:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise BundleError("archive_unreadable", str(path))
        _check_outer_format(raw, limits)
        # The pass reads every byte once, plus each header a second time for
        # the canonical comparison; headers are small next to the contents.
        reader = _CountingReader(raw, 2 * limits.max_archive_bytes)
        return _Pass(Path(path), reader, limits).run()


def _check_outer_format(raw, limits: Limits) -> None:
    size = os.fstat(raw.fileno()).st_size
    if size > limits.max_archive_bytes:
        raise BundleError("archive_too_large", size)
    head = raw.read(TAR_MAGIC_OFFSET + 8)
    raw.seek(0)
    compressed = archive_format(head)
    if compressed not in (None, "tar"):
        raise BundleError("archive_compressed", compressed)


class _Pass:
    """One pass over the archive: headers, canonical form, budgets and a sha256 per member."""

    def __init__(self, path: Path, reader: _CountingReader, limits: Limits):
        self.reader = reader
        self.limits = limits
        self.index = ArchiveIndex(path)
        self.seen: dict[str, str] = {}
        self.total = 0
        self.position = 0
        self.buffer = bytearray(READ_BLOCK_BYTES)

    def run(self) -> ArchiveIndex:
        try:
            with tarfile.open(fileobj=self.reader, mode="r:", encoding=ENCODING, errors="strict") as tar:
                for info in self._infos(tar):
                    self._member(info)
        except UnicodeError as error:
            raise BundleError("path_not_utf8", _undecodable(error)) from None
        except (tarfile.TarError, EOFError, OverflowError, ValueError) as error:
            # The header that failed starts at self.position, the end of the last member read whole.
            problem = str(error) or type(error).__name__
            raise BundleError("archive_invalid", problem, offset=self.position, problem=problem) from None
        _check_end_blocks(self.reader, self.position)
        return self.index

    def _infos(self, tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        count = 0
        while (info := tar.next()) is not None:
            count += 1
            if count > self.limits.max_members:
                raise BundleError("member_count_exceeded", count)
            yield info

    def _member(self, info: tarfile.TarInfo) -> None:
        _check_member_type(info)
        check_member_path(info.name)
        self._check_unique(info.name)
        if info.isdir():
            if info.size:
                raise BundleError("folder_has_content", f"{info.name} ({info.size} B)")
            self.index.folders.add(info.name)
        elif info.size > self.limits.max_member_bytes:
            raise BundleError("member_too_large", f"{info.name} ({info.size} B)")
        self._check_header(info)
        if not info.isdir():
            self._hash_data(info)

    def _check_unique(self, name: str) -> None:
        key = path_key(name)
        if key in self.seen:
            raise BundleError("path_duplicate", f"{self.seen[key]!r} / {name!r}")
        self.seen[key] = name

    def _check_header(self, info: tarfile.TarInfo) -> None:
        """Compare the header bytes with the ones the writer would produce for this name and size."""
        expected = canonical_tarinfo(info.name, info.size, info.isdir()).tobuf(TAR_FORMAT, ENCODING, "strict")
        if info.offset != self.position or info.offset_data != self.position + len(expected):
            raise BundleError("archive_not_canonical", self.position)
        if _read_at(self.reader, self.position, len(expected)) != expected:
            raise BundleError("archive_not_canonical", self.position)
        self.position += len(expected)

    def _hash_data(self, info: tarfile.TarInfo) -> None:
        """Read the member's bytes once, hashing them; check the padding after them is zero."""
        digest, remaining, view = hashlib.sha256(), info.size, memoryview(self.buffer)
        self.reader.seek(info.offset_data)
        first = True
        while remaining:
            count = self.reader.readinto(view[:min(remaining, READ_BLOCK_BYTES)])
            if not count:
                raise BundleError("member_truncated", f"{info.name}: {info.size - remaining} B / {info.size} B")
            if first:
                self._check_nested(info.name, bytes(view[:count]))
                first = False
            digest.update(view[:count])
            if info.name in KEPT_MEMBERS:
                self.index.kept[info.name] = self.index.kept.get(info.name, b"") + bytes(view[:count])
            remaining -= count
        self._count_total(info.size)
        self.index.members[info.name] = Member(info.name, info.offset_data, info.size, digest.hexdigest())
        if info.name in KEPT_MEMBERS and info.size == 0:
            self.index.kept[info.name] = b""
        self._check_padding(info)

    def _check_nested(self, name: str, head: bytes) -> None:
        kind = archive_format(head)
        if kind is not None:
            raise BundleError("member_nested_archive", f"{name} ({kind})")

    def _count_total(self, size: int) -> None:
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise BundleError("archive_too_large", self.total)

    def _check_padding(self, info: tarfile.TarInfo) -> None:
        data_end = self.position + info.size
        self.position += _round_up(info.size, tarfile.BLOCKSIZE)
        padding = _read_at(self.reader, data_end, self.position - data_end)
        if padding.count(0) != len(padding) or len(padding) != self.position - data_end:
            raise BundleError("archive_not_canonical", data_end)


def _undecodable(error: UnicodeError) -> str:
    raw = getattr(error, "object", b"")
    if isinstance(raw, (bytes, bytearray)):
        return raw.decode(ENCODING, "backslashreplace")
    return str(error)


def _check_member_type(info: tarfile.TarInfo) -> None:
    if info.type in (tarfile.REGTYPE, tarfile.DIRTYPE):
        return
    if info.issym() or info.islnk():
        raise BundleError("member_link", f"{info.name} -> {info.linkname}")
    if info.ischr() or info.isblk() or info.isfifo():
        raise BundleError("member_special", info.name)
    raise BundleError("member_type_unsupported", f"{info.name} (type {info.type!r})")


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


def read_member(path: Path, member: Member) -> bytes:
    """Read one member's bytes again from the archive and check them against the pass's digest.

    The file may have changed since it was verified; a changed member raises
    `file_changed_after_verification` instead of returning unverified bytes.
    """
    try:
        with open(path, "rb") as stream:
            stream.seek(member.offset)
            data = stream.read(member.size)
    except OSError as error:
        raise BundleError("archive_unreadable", str(path), **os_error_details(error)) from None
    if len(data) != member.size or hashlib.sha256(data).hexdigest() != member.sha256:
        raise BundleError("file_changed_after_verification", member.name)
    return data
