"""Documents staff attach to a case: a signed mediation agreement (调解协议书), a resident's commitment to stop
petitioning (息诉罢访承诺书), other papers. The bytes go into the media store under case-files/, named by their
sha256 (the same file twice is stored once); the row says whose case, what kind, and who attached it.

Writing the file is the caller's job in two halves so no transaction waits on the disk: `save_bytes` (outside
any transaction; idempotent) then `record` (inside the transaction that also changes the case)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.config import Settings
from storage.fast import Tx

KINDS = ("agreement", "commitment", "other")
# What a PDF, a JPEG and a PNG start with: the type the browser claims is not trusted alone.
_MAGIC = {"application/pdf": (b"%PDF-",), "image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",)}
FILENAME_CHARS = 200


class FileRefused(Exception):
    """Why a file was refused: a text key under [case_file] and its values."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values


@dataclass(frozen=True)
class Saved:
    path: str
    sha256: str
    size: int
    content_type: str
    filename: str


@dataclass(frozen=True)
class CaseFile:
    id: int
    case_id: int
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    path: str
    uploaded_by: str
    created_at: datetime


def check(data: bytes, content_type: str, filename: str, settings: Settings) -> tuple[str, str]:
    """The content type (as the bytes show it) and a clean filename, or FileRefused."""
    f = settings.fieldwork
    if not data:
        raise FileRefused("empty")
    if len(data) > f.max_file_bytes:
        raise FileRefused("too_large", max_mb=round(f.max_file_bytes / 1024 / 1024, 1))
    ctype = content_type.split(";")[0].strip().lower()
    actual = next((t for t, magics in _MAGIC.items() if any(data.startswith(m) for m in magics)), None)
    if (
        actual is None
        or actual not in f.file_types
        or (ctype and ctype != actual and ctype != "application/octet-stream")
    ):
        raise FileRefused("bad_type", types="、".join(t.split("/")[1].upper() for t in f.file_types))
    # The name as the clerk saved it, without a folder (a Windows browser may send C:\扫描\协议.pdf).
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", base) if ch.isprintable())
    return actual, (name.strip() or "file")[:FILENAME_CHARS]


def save_bytes(data: bytes, content_type: str, filename: str, settings: Settings) -> Saved:
    """Check the file and put it in the store (atomically: a temporary file renamed into place)."""
    ctype, name = check(data, content_type, filename, settings)
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(settings.media.store_dir).resolve() / "case-files"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / digest
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return Saved(str(path), digest, len(data), ctype, name)


async def record(tx: Tx, case_id: int, kind: str, saved: Saved, *, by: str, now: datetime) -> int:
    if kind not in KINDS:
        raise FileRefused("bad_kind")
    return await tx.val(
        "INSERT INTO case_files (case_id, kind, filename, content_type, size, sha256, path, uploaded_by, created_at) "
        "VALUES (:case, :kind, :name, :ctype, :size, :sha, :path, :by, :now) RETURNING id",
        case=case_id,
        kind=kind,
        name=saved.filename,
        ctype=saved.content_type,
        size=saved.size,
        sha=saved.sha256,
        path=saved.path,
        by=by,
        now=tx.ts(now),
    )


async def for_case(tx: Tx, case_id: int, kind: str | None = None) -> list[CaseFile]:
    rows = await tx.all(
        "SELECT id, case_id, kind, filename, content_type, size, sha256, path, uploaded_by, created_at "
        "FROM case_files WHERE case_id = :case" + (" AND kind = :kind" if kind else "") + " ORDER BY id",
        case=case_id,
        **({"kind": kind} if kind else {}),
    )
    return [
        CaseFile(
            r["id"],
            r["case_id"],
            r["kind"],
            r["filename"],
            r["content_type"],
            r["size"],
            r["sha256"],
            r["path"],
            r["uploaded_by"],
            tx.dt(r["created_at"]),
        )
        for r in rows
    ]
