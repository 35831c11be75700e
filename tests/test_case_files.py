"""Documents attached to cases: checked by what the bytes are, not what the browser says; stored once by hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.services import case_files

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def settings(tmp_path):
    return load_settings(path=os.devnull, env={"FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path / "media")})


def test_a_signed_agreement_is_stored_once_by_its_hash(settings):
    first = case_files.save_bytes(PDF, "application/pdf", "调解协议书（签字）.pdf", settings)
    again = case_files.save_bytes(PDF, "application/octet-stream", "C:\\scans\\copy.pdf", settings)
    assert first.path == again.path and Path(first.path).read_bytes() == PDF
    assert first.content_type == again.content_type == "application/pdf"
    assert first.filename == "调解协议书（签字）.pdf" and again.filename == "copy.pdf"
    assert Path(first.path).parent == Path(settings.media.store_dir).resolve() / "case-files"


@pytest.mark.parametrize(
    ("data", "ctype", "key"),
    [
        (b"", "application/pdf", "empty"),
        (b"<html><script>alert(1)</script>", "application/pdf", "bad_type"),  # says PDF, is not
        (PNG, "application/pdf", "bad_type"),  # a PNG claiming to be a PDF
        (b"GIF89a....", "image/gif", "bad_type"),
    ],
)
def test_what_is_not_a_pdf_or_a_photo_is_refused(settings, data, ctype, key):
    with pytest.raises(case_files.FileRefused) as refused:
        case_files.save_bytes(data, ctype, "x", settings)
    assert refused.value.key == key


def test_a_file_over_the_limit_is_refused(tmp_path):
    small = load_settings(
        path=os.devnull,
        env={"FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path), "FRONTDOOR_FIELDWORK_MAX_FILE_BYTES": "100"},
    )
    with pytest.raises(case_files.FileRefused) as refused:
        case_files.save_bytes(PDF + b" " * 100, "application/pdf", "big.pdf", small)
    assert refused.value.key == "too_large"


async def test_recorded_files_are_listed_with_the_case(store, clock, settings):
    from bot.services import cases

    async with store.write() as tx:
        number = await cases.submit_complaint(
            tx,
            cases.NewComplaint(
                openid="o_f",
                category="物业",
                place_label="云城小区",
                latitude=None,
                longitude=None,
                description="停车收费过高",
                photo_media_ids=[],
                voice_media_ids=[],
                video_media_ids=[],
                links=[],
                contact_phone=None,
            ),
            now=clock.now(),
            tz=settings.tz,
            prefix="XF",
            acceptance_days=15,
        )
        case_id = await tx.val("SELECT id FROM cases WHERE number = :n", n=number)
        saved = case_files.save_bytes(PDF, "application/pdf", "agreement.pdf", settings)
        await case_files.record(tx, case_id, "agreement", saved, by="张科员", now=clock.now())
        with pytest.raises(case_files.FileRefused):
            await case_files.record(tx, case_id, "selfie", saved, by="张科员", now=clock.now())
    async with store.read() as tx:
        (found,) = await case_files.for_case(tx, case_id)
    assert (found.kind, found.filename, found.uploaded_by, found.size) == (
        "agreement",
        "agreement.pdf",
        "张科员",
        len(PDF),
    )
