"""Format sniffing: which format the bytes claim to be, by their signature, before any decoder runs."""

from __future__ import annotations

from typing import Final

#: Signatures of formats that are images (or documents) we recognise but do not decode: they
#: deserve "unsupported type" (415) rather than "corrupt file" (422).
OTHER_FORMATS: Final = (
    (b"%PDF", "application/pdf"),
    (b"%!PS", "application/postscript"),
    (b"\xc5\xd0\xd3\xc6", "application/postscript"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
    (b"\xff\x4f\xff\x51", "image/jp2"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "image/jxl"),
    (b"\xff\x0a", "image/jxl"),
    (b"qoif", "image/qoi"),
    (b"icns", "image/icns"),
    (b"DDS ", "image/vnd-ms.dds"),
    (b"v/1\x01", "image/x-exr"),
    (b"#?RADIANCE", "image/vnd.radiance"),
    (b"gimp xcf", "image/x-xcf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)
#: Signatures of the formats we do decode, by the name PIL gives them.
OWN_FORMATS: Final = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
RIFF_TYPES: Final = {b"AVI ": "video/x-msvideo", b"WAVE": "audio/wav", b"ANI ": "application/x-navi-animation"}
HEIF_BRANDS: Final = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"hevc": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"avis": "image/avif",
}
#: Far enough into a file for every signature above; text formats are looked for in the first KiB.
HEAD_BYTES: Final = 64
TEXT_HEAD_BYTES: Final = 1024


def own_format(data: bytes) -> str | None:
    """Which of the decoded formats the bytes claim to be, by their signature ("WebP" for WebP)."""
    for signature, name in OWN_FORMATS:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def sniff_other_format(data: bytes) -> str | None:
    """The media type of bytes in a known format this service does not decode, or None."""
    head = data[:HEAD_BYTES]
    for signature, media_type in OTHER_FORMATS:
        if head.startswith(signature):
            return media_type
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] != b"\x00\x00":
        return "image/x-icon"
    if data.endswith(b"TRUEVISION-XFILE.\x00"):
        return "image/x-tga"
    if head[4:8] == b"ftyp":
        return HEIF_BRANDS.get(head[8:12], "video/mp4")
    if head[:4] == b"RIFF" and head[8:12] in RIFF_TYPES:
        return RIFF_TYPES[head[8:12]]
    text = data[:TEXT_HEAD_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml") or text.startswith(b"<svg") or b"<svg" in text:
        return "image/svg+xml"
    if text.startswith(b"<!doctype html") or text.startswith(b"<html"):
        return "text/html"
    if len(head) >= 2 and head[0] == ord("P") and head[1] in b"1234567" and head[2:3].isspace():
        return "image/x-portable-anymap"
    return None
