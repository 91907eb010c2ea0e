"""training.pairs: the touching pairs it composes, their framing, and the parity-gated export."""

from __future__ import annotations

import numpy as np
import pytest

from service.read.components import label
from training import pairs


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Thick synthetic 'digits' (bars and rings), labelled, as uint8 28x28 like MNIST."""
    rng = np.random.default_rng(0)
    images = np.zeros((20, 28, 28), np.uint8)
    ys, xs = np.mgrid[0:28, 0:28]
    for n in range(20):
        radius = rng.uniform(6, 9)
        ring = np.abs(np.hypot(ys - 14, xs - 14) - radius) < 2.2
        bar = (np.abs(xs - 14) < 2) & (ys > 4) & (ys < 24)
        images[n] = np.where(ring if n % 2 else bar, 255, 0)
    return images, np.arange(20) % 10


def test_a_touching_pair_is_one_mark_and_framed_into_its_box(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels = digits
    rng = np.random.default_rng(1)
    for _ in range(20):
        framed, (first, second, is_pair) = pairs.sample(rng, "touching", images, labels)
        assert framed.shape == (pairs.HEIGHT, pairs.WIDTH) and is_pair == 1
        ys, xs = np.nonzero(framed > 0.05)
        assert ys.max() - ys.min() + 1 <= pairs.BOX_HEIGHT + 1 and xs.max() - xs.min() + 1 <= pairs.BOX_WIDTH + 1
        # The two digits' inks touch: one mark, as /read sees a touching pair.
        assert label(framed > 0.3, framed).count == 1
        assert 0 <= first <= 9 and 0 <= second <= 9


def test_a_spaced_pair_is_two_marks(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels = digits
    rng = np.random.default_rng(2)
    counts = [label(f > 0.3, f).count for f, _ in (pairs.sample(rng, "spaced", images, labels) for _ in range(20))]
    # The narrowest gaps (2% of the height) may close at 20 px; most stay open.
    assert sum(c >= 2 for c in counts) >= 15


def test_sets_are_reproducible_and_in_their_shares(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels = digits
    x1, y1 = pairs.make_set(400, 5, images, labels)
    x2, y2 = pairs.make_set(400, 5, images, labels)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.dtype == np.uint8 and x1.shape == (400, pairs.HEIGHT, pairs.WIDTH)
    share = float(y1[:, 2].mean())
    expected = pairs.KINDS["touching"] + pairs.KINDS["spaced"]
    assert abs(share - expected) < 0.08
    # Labels of pairs come from the digits used; non-pairs carry 0, 0.
    assert set(np.unique(y1[y1[:, 2] == 1][:, :2])) <= set(range(10))
    assert not y1[y1[:, 2] == 0][:, :2].any()


def test_the_export_agrees_with_keras_and_names_its_outputs(digits) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    images, labels = digits
    x, _ = pairs.make_set(64, 3, images, labels)
    inputs = (x.astype(np.float32) / 255)[..., None]
    data, diff = pairs.export(pairs.serving(pairs.build()), inputs)
    assert diff <= 1e-4
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(pairs.OUTPUTS)
    assert session.get_inputs()[0].name == "image"
    first, second, score = session.run(None, {"image": inputs})
    assert first.shape == second.shape == (64, 10) and score.shape == (64,)
    np.testing.assert_allclose(first.sum(axis=1), 1, atol=1e-5)
    assert ((score >= 0) & (score <= 1)).all()


def test_scores_count_a_pair_right_only_when_both_digits_and_the_pair_are() -> None:
    y = np.array([[1, 2, 1], [3, 4, 1], [0, 0, 0], [0, 0, 0]])
    first = np.eye(10)[[1, 3, 0, 0]]
    second = np.eye(10)[[2, 5, 0, 0]]  # the second pair's second digit is wrong
    result = pairs.score([first, second, np.array([0.9, 0.9, 0.2, 0.7])], y, threshold=0.5)
    assert result.pairs_exact == 0.5 and result.pairs_accepted == 1.0 and result.non_pairs_refused == 0.5


def test_the_service_frames_pairs_into_the_box_and_input_training_used() -> None:
    """service.read.pairs keeps its own copy of the framing sizes (it never imports training)."""
    from service.read import pairs as served

    assert (served.HEIGHT, served.WIDTH) == (pairs.HEIGHT, pairs.WIDTH)
    assert (served.BOX_HEIGHT, served.BOX_WIDTH) == (pairs.BOX_HEIGHT, pairs.BOX_WIDTH)
    assert served.OUTPUTS == pairs.OUTPUTS
    ink = np.zeros((40, 90), np.float32)
    ink[5:35, 10:80] = 1.0
    framed = served.frame_pair(ink)
    ys, xs = np.nonzero(framed > 0.05)
    assert framed.shape == (pairs.HEIGHT, pairs.WIDTH)
    assert ys.max() - ys.min() + 1 <= pairs.BOX_HEIGHT + 1 and xs.max() - xs.min() + 1 <= pairs.BOX_WIDTH + 1
