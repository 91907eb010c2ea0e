"""The two architectures, and the training-only augmentation that wraps them.

Both models take ``image`` (N, 28, 28, 1) float32 in [0, 1], white ink on black, and end in a
softmax named ``probabilities``. Augmentation lives outside the inference model: random
transformation ops would otherwise land in the exported ONNX graph, which onnxruntime
cannot load.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
#: The open-set model's eleventh class: "not a digit" (outlier exposure, Hendrycks et al. 2019).
NOT_A_DIGIT = 10
ARCHITECTURES = ("baseline", "improved")


def build_baseline() -> keras.Model:
    """The original project's classic one-convolution network."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="baseline")


def conv_bn(x: tf.Tensor, filters: int, kernel: int = 3, strides: int = 1, padding: str = "valid") -> tf.Tensor:
    # The convolution has no bias: batch normalisation's beta does its job.
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def build_improved(dropout: float = 0.25, open_set: bool = False) -> keras.Model:
    """A compact batch-normalised CNN, sized for accuracy per FLOP.

    The first block works at full resolution with few channels (this is where convolutions
    are most expensive); width grows as the feature maps shrink. Global average pooling
    instead of a big dense layer keeps the parameter count and serving cost low.

    ``open_set``: eleven raw logits (ten digits and "not a digit") named ``logits`` instead of
    the ten-way softmax; :func:`build_serving` turns them into the served outputs. The extra
    class costs 129 multiply-adds per image, nothing beside the convolutions.
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = conv_bn(inputs, 24)  # 26x26
    x = conv_bn(x, 32)  # 24x24
    x = layers.MaxPooling2D(2)(x)  # 12x12
    x = layers.Dropout(dropout / 2)(x)
    x = conv_bn(x, 64)  # 10x10
    x = conv_bn(x, 64)  # 8x8
    x = layers.MaxPooling2D(2)(x)  # 4x4
    x = layers.Dropout(dropout / 2)(x)
    x = conv_bn(x, 128, padding="same")  # 4x4
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    if open_set:
        return keras.Model(inputs, layers.Dense(NUM_CLASSES + 1, name="logits")(x), name="improved_open_set")
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="improved")


def build_serving(trained: keras.Model, temperature: float, platt_a: float, platt_b: float) -> keras.Model:
    """The exported graph: ``image`` -> (``probabilities`` (N, 10), ``digit_score`` (N,)).

    The calibration fitted on the validation split (training.calibrate) is baked in as
    constants, so the service needs nothing but the graph.
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    logits = trained(inputs)
    digits = layers.Lambda(lambda z: z[:, :NUM_CLASSES], name="digit_logits")(logits)
    probabilities = layers.Lambda(lambda z: keras.ops.softmax(z / temperature, axis=-1), name="probabilities")(digits)
    # log P(digit) - log P(not a digit) under the eleven-way softmax, then Platt-scaled.
    margin = layers.Lambda(
        lambda z: keras.ops.logsumexp(z[:, :NUM_CLASSES], axis=-1) - z[:, NOT_A_DIGIT], name="digit_margin"
    )(logits)
    digit_score = layers.Lambda(lambda m: keras.ops.sigmoid(platt_a * m + platt_b), name="digit_score")(margin)
    return keras.Model(inputs, [probabilities, digit_score], name="improved_served")


def build_model(architecture: str, dropout: float = 0.25, open_set: bool = False) -> keras.Model:
    if architecture == "baseline":
        if open_set:
            raise ValueError("only the improved architecture has an open-set variant")
        return build_baseline()
    if architecture == "improved":
        return build_improved(dropout, open_set)
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")


def random_affine(
    images: tf.Tensor,
    *,
    rotation_deg: float,
    shift: float,
    zoom: float,
    seed: tf.Tensor,
) -> tf.Tensor:
    """Rotate, zoom and shift each image by one random affine map, resampled once.

    Composing the three into one matrix costs one bilinear resampling instead of three, so
    strokes stay sharp and the augmentation stays cheap on the CPU.
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * (rotation_deg * math.pi / 180)
    scale = 1.0 + tf.random.stateless_uniform([batch], seeds[1], -zoom, zoom)
    size = tf.cast(tf.shape(images)[1], tf.float32)
    dx = tf.random.stateless_uniform([batch], seeds[2], -shift, shift) * size
    dy = tf.random.stateless_uniform([batch], seeds[3], -shift, shift) * size
    # The transform maps *output* pixel coordinates to input ones, around the image centre.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    centre = (size - 1.0) / 2.0
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = centre - a0 * centre - a1 * centre - dx
    b2 = centre - b0 * centre - b1 * centre - dy
    zeros = tf.zeros_like(cos)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
