"""``python -m service.decoder_process``: decodes costly client images for one worker, in a process
of its own (started by :mod:`service.lanes`).

It runs at a lower CPU priority than the worker, under a cap on its data memory, and is killed
when the request it works for is answered early (timeout, client gone) or when decoding left it
big: its memory then goes back to the operating system at once, which a long-lived worker's heap
never does. It imports only numpy, Pillow and the preprocessing, so that starting one is quick.

Protocol on stdin/stdout, one image at a time:
  request  ``>QI``: max_pixels, byte count; then the image bytes.
  answer   ``>BI``: 0 and 3136 bytes of float32 (28, 28); or 1 and a JSON ``{"status", "detail"}``.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
from typing import BinaryIO, Final

REQUEST: Final = struct.Struct(">QI")
ANSWER: Final = struct.Struct(">BI")
OK: Final = 0
ERROR: Final = 1
#: Added to the worker's niceness: under contention the decoder gets about a tenth of the CPU that a
#: worker at the base priority gets (CFS weights 1024 vs 110 at +10), so light requests go first.
NICE: Final = 10
#: Environment variable that carries the data-memory cap (bytes) to the child.
MEMORY_ENV: Final = "DIGITS_DECODER_DATA_BYTES"


def _read_exact(stream: BinaryIO, count: int) -> bytes | None:
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _answer(stream: BinaryIO, kind: int, payload: bytes) -> None:
    stream.write(ANSWER.pack(kind, len(payload)) + payload)
    stream.flush()


def main() -> int:
    os.nice(NICE)
    limit = int(os.environ.get(MEMORY_ENV, "0"))
    if limit:
        # RLIMIT_DATA covers the heap and anonymous mappings (what decoders allocate), not the shared
        # libraries: over it, an allocation fails with MemoryError instead of the pod being OOM-killed.
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by a library may corrupt the answers

    import numpy as np

    from service import errors, preprocess

    while (head := _read_exact(requests, REQUEST.size)) is not None:
        max_pixels, size = REQUEST.unpack(head)
        data = _read_exact(requests, size)
        if data is None:
            break
        try:
            image = preprocess.image_to_input(data, max_pixels)
        except errors.ServiceError as exc:
            _answer(answers, ERROR, json.dumps({"status": exc.status_code, "detail": exc.detail}).encode())
        except MemoryError:
            detail = errors.UNDECODABLE_IMAGE.format(reason="the image needs too much memory")
            _answer(answers, ERROR, json.dumps({"status": 413, "detail": detail}).encode())
        except Exception:  # any failure on client bytes is the client's, as in the batcher
            detail = errors.UNDECODABLE_IMAGE.format(reason="unreadable image data")
            _answer(answers, ERROR, json.dumps({"status": 422, "detail": detail}).encode())
        else:
            _answer(answers, OK, np.ascontiguousarray(image, np.float32).tobytes())
        del data
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
