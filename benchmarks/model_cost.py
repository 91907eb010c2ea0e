"""Serving cost of the shipped models next to the reference CNN from the feasibility check.

The reference is the architecture tried before this project (two blocks of Conv-Conv-strided
Conv with 32 then 64 filters, batch normalisation, Dense 128: 326k parameters, 99.66% after
15 epochs). Its weights do not matter for speed, so it is built untrained and exported the same
way. Prints parameters, multiply-accumulates per image and onnxruntime time per image on one
thread, at batch 1 and 32, measured in this run.

    python benchmarks/model_cost.py        (needs the train extra for the reference model)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as `python benchmarks/<script>.py`: see benchmarks/__init__.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)


def macs(path: Path) -> int:
    """Multiply-accumulates per image of the Conv, MatMul and Gemm nodes of an ONNX graph."""
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for value in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value or 1 for d in dims]
    weights = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes.get(node.output[0])
            kernel = weights.get(node.input[1])
            if out and kernel:
                # out: N, C_out, H, W; kernel: C_out, C_in / groups, kH, kW
                total += int(np.prod(out[1:])) * int(np.prod(kernel[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            kernel = weights.get(node.input[1])
            if kernel:
                total += int(np.prod(kernel))
    return total


def ms_per_image(path: Path, batch: int, seconds: float = 2.0) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
    for _ in range(20):
        session.run(None, {name: x})
    best = float("inf")
    for _ in range(5):  # best of five windows: the least disturbed by other processes
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 5:
            session.run(None, {name: x})
            runs += 1
        best = min(best, (time.perf_counter() - started) / (runs * batch))
    return best * 1000


def reference_model(directory: Path) -> Path:
    import keras
    from keras import layers

    from training.export import export_onnx

    def conv(x: object, filters: int, kernel: int, strides: int = 1, padding: str = "valid") -> object:
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu")(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input((28, 28, 1), name="image")
    x = inputs
    for filters in (32, 64):
        x = conv(x, filters, 3)
        x = conv(x, filters, 3)
        x = conv(x, filters, 5, strides=2, padding="same")
        x = layers.Dropout(0.4)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    path = directory / "reference.onnx"
    path.write_bytes(export_onnx(model, opset=17))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference model (no TensorFlow)")
    args = parser.parse_args()
    models = {
        "mnist-improved (fp32)": ROOT / "models/mnist-improved.onnx",
        "mnist-improved-int8": ROOT / "models/mnist-improved-int8.onnx",
        "mnist-baseline": ROOT / "models/mnist-baseline.onnx",
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_reference:
            models["reference (feasibility check, 99.66%)"] = reference_model(Path(tmp))
        print("| model | parameters | MACs per image | ms/image, batch 1 | ms/image, batch 32 |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, path in models.items():
            # The int8 graph computes the same convolutions as its fp32 source, on int8 weights.
            source = models["mnist-improved (fp32)"] if "int8" in name else path
            graph = onnx.load(str(source))
            params = sum(int(np.prod(i.dims)) for i in graph.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
            cost = macs(source)
            print(
                f"| {name} | {params:,} | {cost / 1e6:.1f} M | {ms_per_image(path, 1):.3f} | "
                f"{ms_per_image(path, 32):.3f} |"
            )


if __name__ == "__main__":
    main()
