"""Tests of service.preprocess's image pipeline: every step of to_mnist, the shortcut, every error.

The images are real files made with PIL here, plus the committed real-world samples in
tests/data/realworld (made by benchmarks/realworld.py --save-samples), which the shipped model
must read right after preprocessing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.errors import NO_DIGIT, InvalidInput, ServiceError
from service.preprocess import decode_image, image_to_input, to_mnist
from service.preprocess.frame import stroke_width
from service.preprocess.pipeline import mnist_like
from tests.service.imaging import (
    MAX_PIXELS,
    ROOT,
    SAMPLES,
    assert_mnist_form,
    centre_of_mass,
    encode,
    glyph_image,
    glyph_mask,
    ink_box,
    shifted_distance,
)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return to_mnist(glyph_image())


# --- to_mnist: each step --------------------------------------------------------------------------


def test_output_is_mnist_form(reference: np.ndarray) -> None:
    assert_mnist_form(reference)
    # MNIST: the longer side of the ink box is 20 px and the centre of mass at (14, 14).
    assert max(ink_box(reference)) in (20, 21)
    row, col = centre_of_mass(reference)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    # White ink on exactly black: corners are 0, the stroke core is 1.
    assert reference[:3, :3].max() == 0
    assert np.quantile(reference[reference > 0.5], 0.5) > 0.9


def test_exif_orientation_is_applied(reference: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn right to display": stored turned left
    stored = glyph_image().transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert shifted_distance(image_to_input(data, MAX_PIXELS), reference) < 0.03
    without = encode(stored, "JPEG", quality=95)
    assert shifted_distance(image_to_input(without, MAX_PIXELS), reference) > 0.05


def test_broken_exif_is_ignored(reference: np.ndarray) -> None:
    image = glyph_image()
    image.info["exif"] = b"Exif\x00\x00II*\x00\xff\xff\xff\xff"
    assert shifted_distance(to_mnist(image), reference) < 0.03


def canvas(ink: int, hidden: int, alpha_mode: str = "RGBA") -> Image.Image:
    """A drawing on a transparent canvas: ink colour where drawn, ``hidden`` colour under alpha 0."""
    mask = glyph_mask(120)
    alpha = Image.new("L", (200, 200), 0)
    alpha.paste(mask, (40, 40))
    colour = Image.new("L", (200, 200), hidden)
    colour.paste(ink, (0, 0, 200, 200), mask=alpha.point(lambda v: 255 if v else 0))
    if alpha_mode == "LA":
        return Image.merge("LA", (colour, alpha))
    return Image.merge("RGBA", (colour, colour, colour, alpha))


@pytest.mark.parametrize(("ink", "hidden"), [(0, 0), (0, 255), (255, 0), (255, 255), (60, 60), (200, 128)])
@pytest.mark.parametrize("alpha_mode", ["RGBA", "LA"])
def test_transparent_canvases_are_flattened_on_a_contrasting_background(
    ink: int, hidden: int, alpha_mode: str, reference: np.ndarray
) -> None:
    data = encode(canvas(ink, hidden, alpha_mode), "PNG")
    assert shifted_distance(image_to_input(data, MAX_PIXELS), reference) < 0.04


def test_opaque_picture_with_transparent_margins_keeps_its_background(reference: np.ndarray) -> None:
    picture = glyph_image(mode="RGBA", ink=(20, 20, 20, 255), paper=(240, 240, 240, 255))
    alpha = Image.new("L", (200, 200), 0)
    alpha.paste(255, (10, 10, 190, 190))
    picture.putalpha(alpha)
    assert shifted_distance(to_mnist(picture), reference) < 0.04


def test_fully_transparent_image_has_no_digit() -> None:
    with pytest.raises(InvalidInput, match="no digit"):
        to_mnist(Image.new("RGBA", (50, 50), (0, 0, 0, 0)))


def other_modes(image: Image.Image) -> dict[str, Image.Image]:
    grey = np.asarray(image, dtype=np.float64) / 255
    deep = Image.fromarray(np.rint(300 + grey * 3600).astype(np.uint16))  # 12-bit data in 16 bits
    palette_alpha = image.convert("RGBA")
    palette_alpha.putalpha(255)
    palette_alpha = palette_alpha.convert("P")
    palette_alpha.info["transparency"] = 255
    return {
        "1": image.convert("1", dither=Image.Dither.NONE),
        "1-dithered": image.convert("1"),
        "L": image,
        "LA": image.convert("LA"),
        "P": image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "P+transparency": palette_alpha,
        "RGB": image.convert("RGB"),
        "RGBA": image.convert("RGBA"),
        "RGBX": image.convert("RGBX"),
        "CMYK": image.convert("CMYK"),
        "YCbCr": image.convert("YCbCr"),
        "I;16": deep,
        "I;16B": Image.fromarray(np.asarray(deep).astype(">u2")),
        "I": Image.fromarray((grey * 1e6 - 5e5).astype(np.int32)),
        "F": Image.fromarray((grey * 40 - 3).astype(np.float32)),
    }


@pytest.mark.parametrize(
    "mode",
    [
        "1",
        "1-dithered",
        "L",
        "LA",
        "P",
        "P+transparency",
        "RGB",
        "RGBA",
        "RGBX",
        "CMYK",
        "YCbCr",
        "I;16",
        "I;16B",
        "I",
        "F",
    ],
)
def test_every_pixel_mode_gives_the_same_digit(mode: str, reference: np.ndarray) -> None:
    image = other_modes(glyph_image())[mode]
    tolerance = 0.06 if mode.startswith("1") else 0.03  # bilevel loses the anti-aliasing
    assert shifted_distance(to_mnist(image), reference) < tolerance


def test_sixteen_bit_png_uses_its_real_range(reference: np.ndarray) -> None:
    image = other_modes(glyph_image())["I;16"]
    decoded = decode_image(encode(image, "PNG"), MAX_PIXELS)
    assert decoded.mode.startswith("I")
    assert shifted_distance(to_mnist(decoded), reference) < 0.03


def test_float_images_with_nan_and_inf_are_handled() -> None:
    pixels = np.asarray(glyph_image(), dtype=np.float32)
    pixels[0, 0], pixels[0, 1], pixels[0, 2] = np.nan, np.inf, -np.inf
    assert_mnist_form(to_mnist(Image.fromarray(pixels)))


def test_animated_gif_uses_the_first_frame(reference: np.ndarray) -> None:
    first = glyph_image()
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[first.rotate(90), Image.new("L", (200, 200), 240)])
    assert shifted_distance(image_to_input(buffer.getvalue(), MAX_PIXELS), reference) < 0.03


@pytest.mark.parametrize(("ink", "paper"), [(20, 240), (240, 20), (90, 160), (160, 90)])
def test_polarity_is_detected(ink: int, paper: int, reference: np.ndarray) -> None:
    assert shifted_distance(to_mnist(glyph_image(ink=ink, paper=paper)), reference) < 0.03


@pytest.mark.parametrize(("ink", "paper"), [(20, 240), (240, 20)])
def test_tight_crops_touching_the_border(ink: int, paper: int, reference: np.ndarray) -> None:
    image = glyph_image(ink=ink, paper=paper)
    tight = image.crop(Image.eval(image, lambda v: abs(v - paper) > 40 and 255).getbbox())
    assert shifted_distance(to_mnist(tight), reference) < 0.04


@pytest.mark.parametrize(
    ("ink", "paper"),
    [((200, 30, 30), (30, 160, 40)), ((240, 240, 80), (40, 40, 200)), ((150, 100, 90), (90, 120, 150))],
)
def test_coloured_ink_on_coloured_paper(
    ink: tuple[int, int, int], paper: tuple[int, int, int], reference: np.ndarray
) -> None:
    image = glyph_image(mode="RGB", ink=ink, paper=paper)
    assert shifted_distance(to_mnist(image), reference) < 0.04


def phone_photo(seed: int = 0) -> Image.Image:
    """Grey ink on yellowish paper with a strong light gradient, noise and JPEG."""
    rng = np.random.default_rng(seed)
    mask = np.asarray(glyph_image(ink=255, paper=0, frame=(400, 300), at=(220, 100)), dtype=np.float32) / 255
    ys, xs = np.mgrid[0:300, 0:400].astype(np.float32)
    light = 0.6 + 0.4 * xs / 400 - 0.1 * ((ys - 150) / 150) ** 2
    paper = np.array([235, 225, 190], dtype=np.float32)
    pixels = (paper * (1 - mask[..., None]) + 60 * mask[..., None]) * light[..., None]
    pixels += rng.normal(0, 4, pixels.shape)
    return Image.open(io.BytesIO(encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=70)))


def test_uneven_light_and_noise_are_suppressed(reference: np.ndarray) -> None:
    out = to_mnist(phone_photo())
    assert shifted_distance(out, reference) < 0.05
    # Away from the digit the background is exactly black, like MNIST's.
    assert out[:2].max() == 0 and out[-2:].max() == 0 and out[:, :2].max() == 0


def test_blank_photo_of_unevenly_lit_paper_has_no_digit() -> None:
    rng = np.random.default_rng(5)
    ys, xs = np.mgrid[0:300, 0:400].astype(np.float32)
    paper = 230 * (0.6 + 0.4 * xs / 400 - 0.1 * ((ys - 150) / 150) ** 2) + rng.normal(0, 3, (300, 400))
    photo = encode(Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)), "JPEG", quality=70)
    with pytest.raises(InvalidInput) as info:
        image_to_input(photo, MAX_PIXELS)
    assert info.value.detail == NO_DIGIT


def test_specks_far_from_the_digit_are_ignored(reference: np.ndarray) -> None:
    image = glyph_image(frame=(300, 300), at=(60, 60))
    for x, y in ((10, 280), (285, 15), (290, 290)):
        image.paste(20, (x, y, x + 3, y + 3))
    assert shifted_distance(to_mnist(image), reference) < 0.03


@pytest.mark.parametrize("stroke", [0.02, 0.04, 0.25])
def test_stroke_width_is_brought_into_mnists_range(stroke: float) -> None:
    out = to_mnist(glyph_image(height=160, stroke=stroke))
    width = stroke_width(out > 0.5)
    assert 1.2 <= width <= 3.2
    assert np.quantile(out[out > 0.5], 0.5) > 0.85


def test_huge_images_are_reduced_quickly(reference: np.ndarray) -> None:
    image = glyph_image(height=2000, frame=(3000, 2500))
    assert shifted_distance(to_mnist(image), reference) < 0.04


def test_wide_and_tall_frames_keep_the_aspect_ratio(reference: np.ndarray) -> None:
    wide = glyph_image(height=60, frame=(600, 90), at=(500, 15))
    tall = glyph_image(height=60, frame=(80, 500), at=(10, 20))
    assert shifted_distance(to_mnist(wide), reference) < 0.04
    assert shifted_distance(to_mnist(tall), reference) < 0.04


def test_already_mnist_form_images_reach_the_model_as_mnist_did(
    mnist_sample: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = mnist_sample
    differences = []
    for pixels in images:
        image = Image.open(io.BytesIO(encode(Image.fromarray(pixels))))
        out = to_mnist(image)
        # Bit for bit the training input (pixel / 255): nothing re-framed, nothing re-stroked.
        assert np.array_equal(out, pixels.astype(np.float32) / 255)
        # The full path (for a copy that is not mode L) frames it nearly the same way; it
        # re-strokes thin and thick digits into MNIST's middle band of widths.
        differences.append(np.abs(to_mnist(image.convert("RGB")) - out).mean())
    assert np.mean(differences) < 0.03 and np.max(differences) < 0.12


def test_a_committed_mnist_png_takes_the_shortcut() -> None:
    names = [name for name in sample_labels() if name.startswith("mnist_png_")]
    if not names:
        pytest.skip("no MNIST-form sample committed")
    image = Image.open(SAMPLES / names[0]).convert("L")
    shortcut = mnist_like(image)
    assert shortcut is not None
    assert np.array_equal(shortcut, np.asarray(image, dtype=np.float32) / 255)


def test_shortcut_still_recentres() -> None:
    digit = to_mnist(glyph_image())
    moved = np.roll(digit, (-3, 3), axis=(0, 1))
    image = Image.fromarray(np.rint(moved * 255).astype(np.uint8))
    assert mnist_like(image) is not None
    out = to_mnist(image)
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    assert np.abs(out - digit).mean() < 0.03  # framing its own output again changes it only a little


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (64, 64), 255),
        Image.new("L", (64, 64), 0),
        Image.new("RGB", (64, 64), (120, 30, 200)),
        Image.new("L", (1, 1), 0),
        glyph_image(ink=120, paper=125),
        Image.new("F", (30, 30), float("nan")),
        Image.new("I;16", (30, 30), 40000),
        Image.fromarray(np.clip(np.random.default_rng(3).normal(128, 3, (80, 80)), 0, 255).astype(np.uint8)),
    ],
    ids=["white", "black", "colour", "one-pixel", "low-contrast", "nan", "flat-16-bit", "faint-noise"],
)
def test_blank_or_flat_images_have_no_digit(image: Image.Image) -> None:
    with pytest.raises(InvalidInput) as info:
        to_mnist(image)
    assert info.value.detail == NO_DIGIT


# --- The committed real-world samples and the model -----------------------------------------------


def sample_labels() -> dict[str, int]:
    path = SAMPLES / "labels.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def model() -> object:
    ort = pytest.importorskip("onnxruntime")
    for name in ("mnist-improved.onnx", "mnist-baseline.onnx"):
        path = ROOT / "models" / name
        if path.exists():
            return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pytest.skip("no trained model in models/")


def test_samples_cover_the_special_encodings() -> None:
    names = sample_labels()
    assert 30 <= len(names) <= 40
    for prefix in ("cmyk_", "gray16_", "palette_alpha_", "la_", "animated_", "exif_rotated_"):
        assert any(name.startswith(prefix) for name in names), prefix
    assert {Path(name).suffix for name in names} >= {".png", ".jpg", ".gif", ".webp"}
    assert all((SAMPLES / name).stat().st_size <= 8_000 for name in names)


@pytest.mark.parametrize("name", sorted(sample_labels()))
def test_sample_is_read_right(name: str, model: object) -> None:
    pixels = image_to_input((SAMPLES / name).read_bytes(), MAX_PIXELS)
    assert_mnist_form(pixels)
    session = model
    input_name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    probabilities = session.run(None, {input_name: pixels[None, :, :, None]})[0]  # type: ignore[attr-defined]
    assert int(probabilities.argmax()) == sample_labels()[name]


# --- Properties -----------------------------------------------------------------------------------

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "I;16", "F"]


@st.composite
def any_image(draw: st.DrawFn) -> Image.Image:
    mode = draw(st.sampled_from(MODES))
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["noise", "flat", "two-level", "specks", "gradient", "glyph"]))
    if content == "glyph":
        base = np.asarray(glyph_image(height=max(4, height - 4), frame=(width, height)), dtype=np.float64) / 255
    elif content == "flat":
        base = np.full((height, width), rng.random())
    elif content == "two-level":
        base = np.where(rng.random((height, width)) < rng.random(), rng.random(), rng.random())
    elif content == "specks":
        base = (rng.random((height, width)) < 0.01).astype(np.float64)
    elif content == "gradient":
        base = np.add.outer(np.linspace(0, rng.random(), height), np.linspace(0, rng.random(), width))
    else:
        base = rng.random((height, width))
    grey = np.clip(base, 0, 1)
    image = Image.fromarray(np.rint(grey * 255).astype(np.uint8))
    if mode == "I;16":
        return Image.fromarray(np.rint(grey * draw(st.sampled_from([255, 4095, 65535]))).astype(np.uint16))
    if mode == "I":
        return Image.fromarray((grey * rng.uniform(-1e9, 1e9) + rng.uniform(-1e9, 1e9)).astype(np.int32))
    if mode == "F":
        values = (grey * draw(st.sampled_from([1.0, 255.0, 1e30, -1e-30]))).astype(np.float32)
        if draw(st.booleans()):
            values.ravel()[rng.integers(0, values.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return Image.fromarray(values)
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        colour = image.convert("RGB") if mode.startswith(("RGB", "P")) else image
        alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8) * (rng.random() < 0.5))
        full = colour.convert("RGBA" if mode.startswith(("RGB", "P")) else "LA")
        full.putalpha(alpha)
        return full.convert(mode) if mode != "PA" else full.convert("P").convert("PA")
    if mode == "P":
        return image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return image.convert(mode)


@given(any_image())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_image_gives_mnist_form_or_a_documented_error(image: Image.Image) -> None:
    try:
        out = to_mnist(image)
    except ServiceError as error:
        assert error.status_code in (413, 415, 422)
        return
    assert_mnist_form(out)


ENCODABLE = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "F"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
}


@given(any_image(), st.sampled_from(sorted(ENCODABLE)), st.integers(0, 100))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_encoded_or_damaged_file_gives_mnist_form_or_a_documented_error(
    image: Image.Image, fmt: str, cut: int
) -> None:
    if image.mode in ("La", "RGBa", "PA"):
        image = image.convert("LA" if image.mode == "La" else "RGBA")
    if image.mode not in ENCODABLE[fmt]:
        image = image.convert(ENCODABLE[fmt][-1] if image.mode in ("I", "F") else "RGB")
        if image.mode not in ENCODABLE[fmt]:
            image = image.convert(ENCODABLE[fmt][0])
    data = encode(image, fmt)
    if cut < 30:  # damaged in transit
        data = data[: len(data) * cut // 30]
    try:
        out = image_to_input(data, MAX_PIXELS)
    except ServiceError as error:
        assert error.status_code in (413, 415, 422)
        return
    assert_mnist_form(out)


@given(
    height=st.integers(24, 420),
    frame_scale=st.floats(1.0, 2.5),
    aspect=st.floats(0.5, 3.0),
    where=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
@settings(max_examples=40, deadline=None)
def test_output_is_invariant_to_size_and_position(
    height: int, frame_scale: float, aspect: float, where: tuple[float, float], reference: np.ndarray
) -> None:
    mask = glyph_mask(height)
    frame_h = max(mask.height, round(height * frame_scale))
    frame_w = max(mask.width, round(frame_h * aspect))
    at = (round(where[0] * (frame_w - mask.width)), round(where[1] * (frame_h - mask.height)))
    out = to_mnist(glyph_image(height=height, frame=(frame_w, frame_h), at=at))
    tolerance = 0.06 if height < 40 else 0.04  # a tiny source has less detail to give
    assert shifted_distance(out, reference) < tolerance
