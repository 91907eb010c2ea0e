"""An image's cost, read from its header before any decoder runs, and the limits it must keep.

Every format we accept states its dimensions in a few bytes at the start of the file, so the
cost of decoding it (how many pixels the decoder must produce, and how fast that decoder is)
is known before a byte of pixel data is touched. :func:`image_cost` reads it without PIL;
:func:`check_cost` refuses with 413 what no digit needs, so a 1 KB file that unpacks to 24 MP
is refused in microseconds instead of stalling a worker for seconds.

The limits are per decoder, from measurement (``benchmarks/preprocess_cost.py --rates`` and ``--costly``):
the decoders differ twentyfold in time per pixel, and the pixels of any format but JPEG are
decoded at full size (only libjpeg scales while decoding).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from PIL import Image

from service.errors import (
    IMAGE_BOMB,
    IMAGE_OVER_LIMIT,
    IMAGE_TOO_COMPLEX,
    IMAGE_TOO_LARGE,
    UNDECODABLE_IMAGE,
    UNSUPPORTED_IMAGE_TYPE,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.preprocess.sniff import own_format, sniff_other_format

#: No digit needs more than this many pixels a side: a 48 MP phone photo is 8064 px wide and
#: an A4 page scanned at 600 dpi 7016 px tall. (A 24,000,000 x 1 image is an attack, not a digit.)
MAX_SIDE: Final = 10_000

#: What one image may cost to decode. Measured with ``benchmarks/preprocess_cost.py --rates``
#: (4 MP of realistic content, on this project's 2-core machine while it was shared, so about
#: three times the quiet figures; the ratios are what matter), in ms per megapixel:
#: JPEG at 1/8 scale 14, BMP 8, PNG grey 27, GIF 46, TIFF 60-140, PNG RGB 69, progressive JPEG
#: at 1/8 scale 63, lossy WebP 83, PNG RGBA 95, lossless WebP 142. PIL holds 1, 2 or 4 bytes per
#: pixel, whatever the file's bit depth.
#:
#: Memory first: PIL decodes every format but JPEG at full size, and the pipeline's conversions
#: briefly add about as much again, so 48 MiB decoded (a 12 MP photo or a 300 dpi A4 scan in
#: colour, 24 MP grey) peaks near 100 MB, within the 512 MiB a pod has for several at once.
MAX_DECODED_BYTES: Final = 48 * 1024 * 1024
#: Time second, for the slow decoders: no image may cost much more to decode than the 12 MP
#: phone JPEG users really send (about 0.17 s at the rates above):
#: - a progressive JPEG is decoded scan by scan over a full-size coefficient buffer whatever
#:   the output size: up to a 12 MP photo re-saved by an editor;
#: - WebP (libwebp decodes at full size, RGBA): 2048 x 2048, more than any web image of a digit;
#: - RLE-compressed BMP is decoded by PIL in Python, 0.1-0.35 us per pixel (2.5 s for 24 MP):
#:   icon sizes only, 512 x 512, so it never costs more than about 0.1 s.
JPEG_PROGRESSIVE_PIXELS: Final = 12_600_000
WEBP_PIXELS: Final = 2048 * 2048
BMP_RLE_PIXELS: Final = 512 * 512

#: PIL parses every PNG chunk in Python (20,000 empty chunks cost 0.1-0.3 s). Encoders split the
#: pixel data into chunks of 8 KB or more, so a PNG within the body limit (16 MiB) has about
#: 2,000 chunks at most.
MAX_PNG_CHUNKS: Final = 4096
#: PIL parses every JPEG marker segment before the first scan in Python. Real files have 10-30
#: (an ICC profile split into APP2 segments can add up to 255).
MAX_JPEG_SEGMENTS: Final = 512
#: Every scan of a progressive JPEG is a pass over the whole coefficient buffer. libjpeg's own
#: progressive script has 10 scans and mozjpeg's about 20; thousands are an attack.
MAX_JPEG_SCANS: Final = 100
#: TIFF tags are parsed in Python; real files have 10-60 in their first directory.
MAX_TIFF_TAGS: Final = 1024
#: PIL skips bytes between JPEG segments one by one, in Python: a few fill bytes are normal.
MAX_JPEG_GAP: Final = 4096
#: Frames are counted, not decoded (only the first is), but counting walks the file in Python:
#: it stops after this many steps (a few milliseconds) and reports the frames seen so far.
MAX_WALK_STEPS: Final = 2_000


@dataclass(frozen=True)
class ImageCost:
    """What decoding the image will cost, read from its header: format, size, frames, decoder variant."""

    format: str  # PIL's name: PNG, JPEG, WEBP, BMP, GIF or TIFF
    width: int
    height: int
    frames: int  # frames or pages seen in the file (counting stops early); only the first is decoded
    #: The decoder's variant, when it matters for cost: "progressive" JPEG, "lossless" or
    #: "lossy" WebP, "rle" BMP, else "".
    variant: str = ""
    #: Bytes PIL holds per decoded pixel: 1 (grey, palette, bilevel), 2 (16-bit grey) or 4.
    bytes_per_pixel: int = 4

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_pixels(self) -> int:
        """Pixels the decoder produces: JPEGs are decoded at down to 1/8 scale a side."""
        return max(1, self.pixels // 64) if self.format == "JPEG" else self.pixels

    @property
    def decoded_bytes(self) -> int:
        return self.decoded_pixels * self.bytes_per_pixel

    @property
    def limit(self) -> int:
        """The most pixels (width x height) this decoder may be asked for, before the operator's limit."""
        by_memory = MAX_DECODED_BYTES // self.bytes_per_pixel
        if self.format == "JPEG":
            # Decoded at 1/8 scale, so memory never binds; the coefficient buffer of a
            # progressive one is full size, and its scans slow.
            return JPEG_PROGRESSIVE_PIXELS if self.variant == "progressive" else 2**62
        if self.format == "WEBP":
            return min(by_memory, WEBP_PIXELS)
        if self.variant == "rle":
            return min(by_memory, BMP_RLE_PIXELS)
        return by_memory

    @property
    def kind(self) -> str:
        """How the client would name it, for messages: "a progressive JPEG", "an RLE-compressed BMP"."""
        names = {"progressive": "a progressive JPEG", "rle": "an RLE-compressed BMP"}
        if self.variant in names or self.format in ("JPEG", "GIF", "WEBP"):
            return names.get(self.variant) or {"WEBP": "a WebP"}.get(self.format, f"a {self.format}")
        depth = {1: "grey or palette", 2: "16-bit grey"}.get(self.bytes_per_pixel, "colour")
        return f"a {depth} {self.format}"


def image_cost(data: bytes) -> ImageCost:
    """The cost of decoding ``data``, from its header alone (microseconds; no PIL, no pixels).

    Raises the same errors as decoding would for bytes that are not an image we decode: 415 for
    known formats we do not decode, 422 for anything else or a header cut short.
    """
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(data)
        if data.startswith(b"\xff\xd8\xff"):
            return _jpeg(data)
        if data.startswith((b"GIF87a", b"GIF89a")):
            return _gif(data)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(data)
    except (struct.error, IndexError, ValueError):
        own = own_format(data)
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason=f"truncated or corrupt {own} header")) from None
    other = sniff_other_format(data)
    if other is not None:
        raise UnsupportedMediaType(UNSUPPORTED_IMAGE_TYPE.format(content_type=other))
    raise InvalidInput(UNDECODABLE_IMAGE.format(reason="not a recognised image format"))


def check_cost(cost: ImageCost, max_pixels: int) -> None:
    """Refuse (413) an image no digit needs: over the operator's limit, a side or its decoder's limit."""
    width, height, pixels = cost.width, cost.height, cost.pixels
    if width < 1 or height < 1:
        raise InvalidInput(UNDECODABLE_IMAGE.format(reason="the image has no pixels"))
    if pixels > 2 * (Image.MAX_IMAGE_PIXELS or 2**62):
        # Beyond what PIL itself calls a bomb: the same message as before the header check.
        raise PayloadTooLarge(IMAGE_BOMB.format(limit=max_pixels))
    if pixels > max_pixels:
        raise PayloadTooLarge(IMAGE_TOO_LARGE.format(width=width, height=height, pixels=pixels, limit=max_pixels))
    limit = min(cost.limit, max_pixels)
    if max(width, height) > MAX_SIDE or pixels > limit:
        raise PayloadTooLarge(
            IMAGE_OVER_LIMIT.format(width=width, height=height, side=MAX_SIDE, limit=limit, kind=cost.kind)
        )


def _too_complex(kind: str, parts: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(IMAGE_TOO_COMPLEX.format(kind=kind, parts=parts, limit=limit))


def _png(data: bytes) -> ImageCost:
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length < 13:
        raise ValueError("no IHDR")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    # Grey and palette images stay one byte a pixel (two at 16 bits grey); colour becomes 4.
    per_pixel = (2 if depth == 16 else 1) if colour in (0, 3) else 4
    frames, chunks, at = 1, 0, 8
    # Chunk lengths chain through the file: a jump per chunk, no data read but acTL's.
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _too_complex("PNG", "chunks", MAX_PNG_CHUNKS)
        if kind == b"tRNS" and colour == 3:
            per_pixel = 4  # a palette with transparency becomes RGBA in the pipeline
        if kind == b"acTL" and length >= 8:
            frames = max(1, struct.unpack_from(">I", data, at + 8)[0])
        if kind == b"IEND":
            break
        at += 12 + length
    return ImageCost("PNG", width, height, frames, bytes_per_pixel=per_pixel)


_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> ImageCost:
    at, segments = 2, 0
    while True:
        start = at
        while data[at + 1] == 0xFF or data[at] != 0xFF:  # fill bytes may pad between segments
            at = data.index(b"\xff", at + 1)
        if at - start > MAX_JPEG_GAP:
            raise _too_complex("JPEG", "bytes between marker segments", MAX_JPEG_GAP)
        marker = data[at + 1]
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_complex("JPEG", "marker segments", MAX_JPEG_SEGMENTS)
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = struct.unpack_from(">H", data, at + 2)[0]
        if marker in _SOF:
            height, width, components = struct.unpack_from(">HHB", data, at + 5)
            break
        if marker == 0xDA:
            raise ValueError("scan before frame header")
        at += 2 + length
    progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
    if progressive:
        # Entropy-coded data escapes every 0xFF byte, so FF DA only ever starts a scan.
        scans = data.count(b"\xff\xda", at)
        if scans > MAX_JPEG_SCANS:
            raise _too_complex("progressive JPEG", "scans", MAX_JPEG_SCANS)
    return ImageCost("JPEG", width, height, 1, "progressive" if progressive else "", 1 if components == 1 else 4)


def _gif(data: bytes) -> ImageCost:
    # PIL decodes every frame onto the logical screen: the screen's size is what it costs.
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = steps = 0
    end = len(data)
    while at < end and steps < MAX_WALK_STEPS:
        block = data[at]
        if block == 0x3B:  # trailer
            break
        if block == 0x2C:  # image descriptor, its colour table, the LZW code size, then sub-blocks
            frames += 1
            local = data[at + 9]
            at += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        elif block == 0x21:  # extension: label, then sub-blocks
            at += 2
        else:
            break
        while at < end and data[at] and steps < MAX_WALK_STEPS:
            at += data[at] + 1
            steps += 1
        at += 1
    # A palette image, but one with transparency becomes RGBA in the pipeline: costed as that.
    return ImageCost("GIF", width, height, max(1, frames))


def _bmp(data: bytes) -> ImageCost:
    header = struct.unpack_from("<I", data, 14)[0]
    if header == 12:  # OS/2 core header: unsigned 16-bit sizes, no compression
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        return ImageCost("BMP", width, height, 1, bytes_per_pixel=1 if bits <= 8 else 4)
    width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    variant = "rle" if compression in (1, 2) else ""
    return ImageCost("BMP", width, abs(height), 1, variant, 1 if bits <= 8 else 4)


def _webp(data: bytes) -> ImageCost:
    kind = data[12:16]
    if kind == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return ImageCost("WEBP", width & 0x3FFF, height & 0x3FFF, 1, "lossy")
    if kind == b"VP8L":
        bits = struct.unpack_from("<I", data, 21)[0]
        return ImageCost("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1, "lossless")
    if kind != b"VP8X":
        raise ValueError("unknown WebP chunk")
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    frames, at = 0, 12
    for _ in range(MAX_WALK_STEPS):
        if at + 8 > len(data):
            break
        kind, length = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        frames += kind == b"ANMF"
        at += 8 + length + (length & 1)
    # Lossless is the slower decoder: an extended file is costed as if it were.
    return ImageCost("WEBP", width, height, max(1, frames), "lossless")


_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES = 256, 257, 258, 277


def _tiff(data: bytes) -> ImageCost:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    # Classic TIFF: 2-byte entry count, 12-byte entries; BigTIFF: 8-byte count, 20-byte entries.
    offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count = struct.unpack_from(order + ("Q" if big else "H"), data, offset)[0]
    if count > MAX_TIFF_TAGS:
        raise _too_complex("TIFF", "tags", MAX_TIFF_TAGS)
    first, size = offset + (8 if big else 2), 20 if big else 12
    sizes: dict[int, int] = {}
    for entry in range(count):
        at = first + entry * size
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES):
            value_at = at + (12 if big else 8)
            code = {3: "H", 16: "Q"}.get(kind, "I")  # SHORT, LONG8 (BigTIFF) or LONG
            sizes[tag] = struct.unpack_from(order + code, data, value_at)[0]
    if _TIFF_WIDTH not in sizes or _TIFF_HEIGHT not in sizes:
        raise ValueError("no size tags")
    # One sample of up to 8 bits is one byte a pixel in PIL, of 16 bits two; anything else 4.
    # (With several samples, the bits tag holds an offset, not a depth: they are 4 bytes anyway.)
    bits = sizes.get(_TIFF_BITS, 1) if sizes.get(_TIFF_SAMPLES, 1) == 1 else 32
    per_pixel = 1 if bits <= 8 else 2 if bits <= 16 else 4
    pages = _tiff_pages(data, order, big, offset, count)
    return ImageCost("TIFF", sizes[_TIFF_WIDTH], sizes[_TIFF_HEIGHT], pages, bytes_per_pixel=per_pixel)


def _tiff_pages(data: bytes, order: str, big: bool, offset: int, count: int) -> int:
    """Pages in the directory chain (a loop or a cut-off chain ends the count, as PIL would stop)."""
    pages, seen = 1, {offset}
    try:
        while pages < MAX_WALK_STEPS:
            at = offset + (8 if big else 2) + count * (20 if big else 12)
            offset = struct.unpack_from(order + ("Q" if big else "I"), data, at)[0]
            if offset == 0 or offset in seen:
                break
            seen.add(offset)
            count = struct.unpack_from(order + ("Q" if big else "H"), data, offset)[0]
            pages += 1
    except struct.error:
        pass
    return pages
