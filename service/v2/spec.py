"""What this server serves over the protocol: its name, extensions, and the models' tensors."""

from __future__ import annotations

from typing import Final

SERVER_NAME: Final = "mnist-digits"
EXTENSIONS: Final = ("binary_tensor_data",)
PLATFORM: Final = "onnxruntime_onnx"
BINARY: Final = "application/octet-stream"
HEADER_LENGTH: Final = "inference-header-content-length"

IMAGE: Final = "image"
IMAGE_BYTES: Final = "image_bytes"
PROBABILITIES: Final = "probabilities"
DIGIT: Final = "digit"
INPUTS: Final = {IMAGE: ("FP32", [-1, 28, 28, 1]), IMAGE_BYTES: ("BYTES", [-1])}
OUTPUTS: Final = {PROBABILITIES: ("FP32", [-1, 10]), DIGIT: ("INT64", [-1])}
PIXELS: Final = 28 * 28
