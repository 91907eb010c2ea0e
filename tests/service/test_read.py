"""POST /read through the real app: input forms, reading order, boxes, errors and hostile inputs."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest
from PIL import Image

from service import errors
from tests.conftest import DATA, encode

HEIGHT = 64


def digit_of(mnist_sample: tuple[np.ndarray, np.ndarray], label: int, nth: int = 0) -> np.ndarray:
    """An upscaled MNIST sample digit (white on black), cropped to its ink."""
    images, labels = mnist_sample
    image = images[np.flatnonzero(labels == label)[nth]]
    big = np.asarray(Image.fromarray(image).resize((112, 112), Image.Resampling.BICUBIC))
    ys, xs = np.nonzero(big > 40)
    crop = big[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = HEIGHT / crop.shape[0]
    size = (max(1, round(crop.shape[1] * scale)), HEIGHT)
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))


def number(
    mnist_sample: tuple[np.ndarray, np.ndarray], lines: list[str], gap: int = 24, margin: int = 30
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Dark digits on white paper, the given lines of text; returns the image and each digit's box (x, y, w, h)."""
    rows = [[digit_of(mnist_sample, int(c), i) for i, c in enumerate(line)] for line in lines]
    width = max(sum(d.shape[1] for d in row) + gap * (len(row) - 1) for row in rows) + 2 * margin
    height = len(rows) * HEIGHT + (len(rows) - 1) * HEIGHT // 2 + 2 * margin
    ink = np.zeros((height, width), np.uint8)
    boxes = []
    for r, row in enumerate(rows):
        x, y = margin, margin + r * (HEIGHT * 3 // 2)
        for digit in row:
            ink[y : y + HEIGHT, x : x + digit.shape[1]] = np.maximum(ink[y : y + HEIGHT, x : x + digit.shape[1]], digit)
            boxes.append((x, y, digit.shape[1], HEIGHT))
            x += digit.shape[1] + gap
    return 255 - ink, boxes


def post_png(client, pixels: np.ndarray | Image.Image):  # type: ignore[no-untyped-def]
    return client.post("/read", content=encode(pixels), headers={"content-type": "image/png"})


def check_boxes(body: dict, boxes: list[tuple[int, int, int, int]], tolerance: float = 4) -> None:  # type: ignore[type-arg]
    assert len(body["digits"]) == len(boxes)
    for item, (x, y, w, h) in zip(body["digits"], boxes, strict=True):
        box = item["box"]
        assert abs(box["x"] - x) <= tolerance and abs(box["y"] - y) <= tolerance, (box, (x, y, w, h))
        assert abs(box["width"] - w) <= 2 * tolerance and abs(box["height"] - h) <= 2 * tolerance, (box, (x, y, w, h))


# --- Input forms and the answer -----------------------------------------------------------------


def test_every_input_form_reads_the_number(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    pixels, boxes = number(mnist_sample, ["2026"])
    data = encode(pixels)
    answers = [
        client.post("/read", content=data, headers={"content-type": "image/png"}),
        client.post("/read", files={"file": ("n.png", data, "image/png")}),
        client.post("/read", json={"image": base64.b64encode(data).decode()}),
    ]
    version = client.get("/model").json()["version"]
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["text"] == "2026"
        assert body["model_version"] == version
        assert [d["digit"] for d in body["digits"]] == [2, 0, 2, 6]
        for item in body["digits"]:
            assert item["is_digit"] is True and item["line"] == 0
            assert 0 <= item["digit_score"] <= 1
            assert item["confidence"] == pytest.approx(max(item["probabilities"]), abs=1e-6)
        check_boxes(body, boxes)


def test_lines_are_read_top_to_bottom(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    pixels, boxes = number(mnist_sample, ["314", "27"])
    body = post_png(client, pixels).json()
    assert body["text"] == "314\n27"
    assert [d["line"] for d in body["digits"]] == [0, 0, 0, 1, 1]
    check_boxes(body, boxes)


def test_a_single_digit_gets_the_predict_answer(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_sample
    for i in range(5):
        for data in (encode(images[i]), encode(255 - digit_of(mnist_sample, int(labels[i])))):
            read = client.post("/read", content=data, headers={"content-type": "image/png"}).json()
            predicted = client.post("/predict", content=data, headers={"content-type": "image/png"}).json()
            assert len(read["digits"]) == 1
            assert read["digits"][0]["probabilities"] == predicted["probabilities"]
            assert read["text"] == str(predicted["digit"])


def test_specks_are_ignored(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    pixels, boxes = number(mnist_sample, ["58"], margin=60)
    pixels = pixels.copy()
    pixels[5:7, 5:7] = 0
    pixels[-8:-6, -9:-7] = 0
    body = post_png(client, pixels).json()
    assert body["text"] == "58"
    check_boxes(body, boxes)


def test_a_digit_in_two_strokes_is_read_once(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    """A 5 whose top bar is drawn apart from its body: one digit, not two."""
    five = digit_of(mnist_sample, 5).copy()
    rows = np.flatnonzero((five > 128).any(axis=1))
    cut = rows[0] + int(0.22 * (rows[-1] - rows[0]))
    five[cut : cut + 4] = 0
    pixels, _ = number(mnist_sample, ["7"])
    canvas = np.full((pixels.shape[0], pixels.shape[1] + five.shape[1] + 30), 255, np.uint8)
    canvas[:, : pixels.shape[1]] = pixels
    canvas[30 : 30 + HEIGHT, pixels.shape[1] : pixels.shape[1] + five.shape[1]] = 255 - five
    body = post_png(client, canvas).json()
    assert body["text"] == "75", body["text"]


def test_touching_digits_are_cut_apart(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    pixels, _ = number(mnist_sample, ["30"], gap=-4)
    body = post_png(client, pixels).json()
    assert body["text"] == "30"


# --- Boxes in the uploaded image's pixels -------------------------------------------------------


def test_boxes_of_a_big_photo_are_in_its_own_pixels(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    """A 3000x2000 JPEG is decoded scaled down (draft) and shrunk: the boxes are still in its pixels."""
    pixels, boxes = number(mnist_sample, ["49"])
    scale = 3000 / pixels.shape[1]
    big = Image.fromarray(pixels).resize((3000, round(pixels.shape[0] * scale)), Image.Resampling.BILINEAR)
    photo = Image.new("L", (3000, 2000), 255)
    photo.paste(big, (0, 300))
    response = client.post("/read", content=encode(photo, "JPEG", quality=90), headers={"content-type": "image/jpeg"})
    body = response.json()
    assert body["text"] == "49"
    scaled = [(round(x * scale), 300 + round(y * scale), round(w * scale), round(h * scale)) for x, y, w, h in boxes]
    check_boxes(body, scaled, tolerance=0.02 * 3000)


def test_boxes_of_an_exif_rotated_photo_are_upright(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    """Stored turned a quarter left with EXIF orientation 6: boxes are in the upright picture's pixels."""
    pixels, boxes = number(mnist_sample, ["17"])
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    body = client.post("/read", content=data, headers={"content-type": "image/jpeg"}).json()
    assert body["text"] == "17"
    check_boxes(body, boxes)


# --- Errors: the same as /predict's ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"", "headers": {"content-type": "image/png"}}, 422, errors.EMPTY_IMAGE),
        (
            {"content": encode(np.full((40, 40), 255, np.uint8)), "headers": {"content-type": "image/png"}},
            422,
            errors.NO_DIGIT,
        ),
        ({"content": b"\x89PNG\r\n\x1a\nxx", "headers": {"content-type": "image/png"}}, 422, None),
        (
            {"content": b"%PDF-1.4", "headers": {"content-type": "application/pdf"}},
            415,
            errors.UNSUPPORTED_CONTENT_TYPE.format(
                content_type="application/pdf", field="file", json_forms='{"image": "<base64>"}'
            ),
        ),
        ({"json": {"pixels": [[0] * 28] * 28}}, 422, None),
        ({"files": {"other": ("a.png", b"x", "image/png")}}, 422, errors.MISSING_FILE_FIELD.format(field="file")),
    ],
)
def test_errors_are_predicts(client, kwargs, status, message) -> None:  # type: ignore[no-untyped-def]
    read = client.post("/read", **kwargs)
    assert read.status_code == status, read.text
    if message is not None:
        assert read.json()["detail"] == message
    if "json" not in kwargs:  # /predict also takes {"pixels"}, /read only images
        predicted = client.post("/predict", **kwargs)
        assert predicted.status_code == read.status_code
        if status != 415:  # the 415 names each route's own JSON form
            assert predicted.json() == read.json()


def test_json_without_an_image_names_the_field(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/read", json={"picture": "abc"})
    assert response.status_code == 422
    assert response.json()["detail"] == errors.JSON_FIELDS.format(fields="'image'", got="'picture'")


def test_an_image_over_the_pixel_limit_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    data = encode(Image.new("L", (5000, 5000), 255))
    response = client.post("/read", content=data, headers={"content-type": "image/png"})
    assert response.status_code == 413
    assert response.json()["detail"] == errors.IMAGE_TOO_LARGE.format(
        width=5000, height=5000, pixels=25_000_000, limit=24_000_000
    )


# --- Hostile inputs: bounded work -----------------------------------------------------------------


def test_thousands_of_specks_stay_fast(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    """Salt noise all over a number: thousands of marks, a bounded number of them considered."""
    pixels, _ = number(mnist_sample, ["42"], margin=200)
    rng = np.random.default_rng(0)
    noisy = pixels.copy()
    ys, xs = rng.integers(0, noisy.shape[0], 6000), rng.integers(0, noisy.shape[1], 6000)
    noisy[ys, xs] = 0
    started = time.perf_counter()
    response = post_png(client, noisy)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed < 5, elapsed
    assert len(response.json()["digits"]) <= 192  # MAX_ATOMS


def test_many_real_marks_are_bounded(client) -> None:  # type: ignore[no-untyped-def]
    """A grid of 900 equal blobs: every one a mark, only the first MAX_MARKS considered."""
    from service.read.segment import MAX_MARKS

    grid = np.full((900, 900), 255, np.uint8)
    for y in range(10, 900, 30):
        for x in range(10, 900, 30):
            grid[y : y + 12, x : x + 6] = 0
    started = time.perf_counter()
    response = post_png(client, grid)
    assert response.status_code == 200
    assert time.perf_counter() - started < 10
    assert len(response.json()["digits"]) <= MAX_MARKS


# --- Documentation and metrics ------------------------------------------------------------------


def test_read_is_documented_with_an_example(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/read"]["post"]
    content = operation["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "application/json"} <= set(content)
    reading = schema["components"]["schemas"]["Reading"]
    assert reading["examples"][0]["text"] == "27"
    assert {"422", "413", "415"} <= set(operation["responses"])


def test_read_is_counted_in_the_metrics(client, mnist_sample) -> None:  # type: ignore[no-untyped-def]
    pixels, _ = number(mnist_sample, ["8"])
    post_png(client, pixels)
    text = client.get("/metrics").text
    assert 'digits_http_requests_total{method="POST",route="/read",status="200"}' in text
    assert 'digits_http_request_duration_seconds_count{route="/read"}' in text


# --- The numpy labelling, pinned to a plain flood fill --------------------------------------------


def flood_fill_count(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components by breadth-first search: slow, obviously right."""
    from collections import deque

    labels = np.zeros(mask.shape, int)
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if labels[y, x]:
            continue
        count += 1
        labels[y, x] = count
        queue = deque([(y, x)])
        while queue:
            a, b = queue.popleft()
            for c in range(max(0, a - 1), min(mask.shape[0], a + 2)):
                for d in range(max(0, b - 1), min(mask.shape[1], b + 2)):
                    if mask[c, d] and not labels[c, d]:
                        labels[c, d] = count
                        queue.append((c, d))
    return labels, count


def test_components_match_a_flood_fill() -> None:
    from service.read.components import label

    rng = np.random.default_rng(7)
    for _ in range(60):
        height, width = (int(n) for n in rng.integers(1, 30, 2))
        mask = rng.random((height, width)) < rng.uniform(0.1, 0.7)
        found = label(mask, mask.astype(np.float32))
        reference, count = flood_fill_count(mask)
        assert found.count == count
        # The same partition: each found label is exactly one reference label.
        assert len(set(zip(found.labels[mask].tolist(), reference[mask].tolist(), strict=True))) == count
        for k in range(count):
            ys, xs = np.nonzero(found.labels == k + 1)
            assert (found.top[k], found.bottom[k], found.left[k], found.right[k]) == (
                ys.min(),
                ys.max() + 1,
                xs.min(),
                xs.max() + 1,
            )
            assert found.area[k] == len(ys)


# --- Broken digits: the pieces of one digit are read once, on its line ---------------------------


def broken(mnist_sample: tuple[np.ndarray, np.ndarray], label: int, nth: int, at: float, lift: int) -> np.ndarray:
    """A digit (white on black) cut across at ``at`` of its height, its top piece lifted ``lift`` px off the rest."""
    digit = digit_of(mnist_sample, label, nth)
    cut = int(at * HEIGHT)
    out = np.zeros((HEIGHT + lift, digit.shape[1]), np.uint8)
    out[lift + cut + 3 :] = digit[cut + 3 :]
    out[:cut] = digit[:cut]
    return out


#: The shipped open-set model calls these 7s, their bar lifted 12-20 px off the stem, "not a digit"
#: (digit_score 0.005-0.04 against a threshold of 0.056), so /read leaves them out of the text.
REFUSED_BROKEN = {(7, 0, 20), (7, 1, 12), (7, 1, 20), (7, 2, 12), (7, 2, 20)}


@pytest.mark.parametrize(
    ("label", "nth", "at", "lift"),
    [
        pytest.param(
            digit,
            n,
            0.2,
            lift,
            marks=[pytest.mark.xfail(strict=True, reason="refused by the open-set model")]
            if (digit, n, lift) in REFUSED_BROKEN
            else [],
        )
        for digit in (5, 7)
        for n in (0, 1, 2)
        for lift in (12, 20)
    ],
)
def test_a_broken_digit_is_one_digit_on_its_line(client, mnist_sample, label, nth, at, lift) -> None:  # type: ignore[no-untyped-def]
    """Its top piece lifted off its body (a 5's bar, a 7's): not a line of its own above the number."""
    piece = broken(mnist_sample, label, nth, at, lift)
    left, right = digit_of(mnist_sample, 1), digit_of(mnist_sample, 3)
    canvas = np.zeros((HEIGHT + 100, left.shape[1] + piece.shape[1] + right.shape[1] + 120), np.uint8)
    x = 30
    for part in (left, piece, right):
        y = 40 + HEIGHT - part.shape[0]
        canvas[y : y + part.shape[0], x : x + part.shape[1]] = part
        x += part.shape[1] + 24
    body = post_png(client, 255 - canvas).json()
    assert body["text"] == f"1{label}3", body["text"]


# --- A fine pen: one digit in four or more pieces a pen's width apart ------------------------------


@pytest.mark.parametrize(("label", "nth"), [(2, 0), (2, 2), (8, 2)])
def test_a_digit_in_many_near_pieces_is_one_digit(client, mnist_sample, label, nth) -> None:  # type: ignore[no-untyped-def]
    """Three 2 px gaps across a digit (a fine pen's stroke fading out): its 4-7 pieces are read as one digit.

    On main up to 6887b74 a candidate spanned at most three marks, so these three were read as two or
    more digits. (Of 12 such cases, 5 fail on main and 4 here: near pieces now count as one mark, but
    the closed-set model still reads some single pieces confidently.)
    """
    digit = digit_of(mnist_sample, label, nth).copy()
    for at in (0.25, 0.5, 0.75):
        digit[int(at * HEIGHT) : int(at * HEIGHT) + 2] = 0
    left, right = digit_of(mnist_sample, 1), digit_of(mnist_sample, 4)
    canvas = np.zeros((HEIGHT + 80, left.shape[1] + digit.shape[1] + right.shape[1] + 120), np.uint8)
    x = 30
    for part in (left, digit, right):
        canvas[40 : 40 + HEIGHT, x : x + part.shape[1]] = part
        x += part.shape[1] + 24
    body = post_png(client, 255 - canvas).json()
    assert body["text"] == f"1{label}4", body["text"]


@pytest.mark.parametrize("name", ["thin-277", "thin-85", "thin-48"])
def test_a_fine_pen_s_digit_in_more_than_eight_pieces_is_one_digit(client, name) -> None:  # type: ignore[no-untyped-def]
    """Numbers of the dev split's fine-pen style (benchmarks/read_numbers.py), saved as sent.

    One digit of each falls in 9-12 pieces; a candidate of at most 8 atoms (main up to 1fa7470)
    read it in parts: 0277, 83, 43.
    """
    data = (DATA / "read" / f"{name}.png").read_bytes()
    body = client.post("/read", content=data, headers={"content-type": "image/png"}).json()
    assert body["text"] == name.removeprefix("thin-"), body
