"""Triton's tooling calls: model configuration, repository index and statistics, sync and aio clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as tritonclient
import tritonclient.http.aio as tritonclient_aio
from tritonclient.utils import InferenceServerException

from service.v2 import messages, spec, stats
from tests.service.live_server import LiveServer
from tests.service.v2.conftest import Server, check_error, image_input, image_tensor, prefix


def stage_counts(server: Server, model: str) -> dict[str, int]:
    (entry,) = server.triton().get_inference_statistics(model)["model_stats"]
    return {name: value["count"] for name, value in entry["inference_stats"].items()}


def test_server_metadata_lists_the_extensions(server: Server) -> None:
    extensions = server.triton().get_server_metadata()["extensions"]
    assert {"binary_tensor_data", "model_configuration", "model_repository", "statistics"} <= set(extensions)


def test_model_config_matches_the_served_model(server: Server) -> None:
    config = server.triton().get_model_config(server.model)
    runtime = server.http.get("/model").json()["runtime"]
    assert config["name"] == server.model
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == runtime["max_batch_images"]
    inputs = {t["name"]: t for t in config["input"]}
    assert inputs["image"]["data_type"] == "TYPE_FP32" and inputs["image"]["dims"] == [28, 28, 1]
    outputs = {t["name"]: t for t in config["output"]}
    assert outputs["probabilities"] == {**outputs["probabilities"], "data_type": "TYPE_FP32", "dims": [10]}
    assert outputs["digit"]["data_type"] == "TYPE_INT64"
    assert outputs["digit"]["dims"] == [1] and outputs["digit"]["reshape"] == {"shape": []}
    # What perf_analyzer reads: every config tensor is in the metadata, with the same name.
    metadata = server.triton().get_model_metadata(server.model)
    assert [t["name"] for t in config["input"]] == [t["name"] for t in metadata["inputs"]]
    assert [t["name"] for t in config["output"]] == [t["name"] for t in metadata["outputs"]]
    assert config["model_transaction_policy"] == {"decoupled": False}
    assert "dynamic_batching" in config and "sequence_batching" not in config
    assert config["parameters"]["model_version"]["string_value"] == server.version


def test_bytes_model_config(server: Server) -> None:
    config = server.triton().get_model_config(server.bytes_model, server.v2_version)
    assert config["name"] == server.bytes_model
    assert config["input"] == [
        {
            "name": "image_bytes",
            "data_type": "TYPE_STRING",
            "dims": [1],
            "format": "FORMAT_NONE",
            "is_shape_tensor": False,
            "optional": False,
        }
    ]
    assert [t["name"] for t in config["output"]] == [
        t["name"] for t in server.triton().get_model_config(server.model)["output"]
    ]


def test_unknown_model_config_is_a_readable_404(server: Server) -> None:
    with pytest.raises(InferenceServerException) as caught:
        server.triton().get_model_config("no-such-model")
    assert caught.value.status() == "404"
    assert "unknown model 'no-such-model'" in caught.value.message()
    check_error(server.http.get("/v2/models/no-such-model/config"), 404, prefix(messages.UNKNOWN_MODEL))


def test_repository_index(server: Server) -> None:
    index = server.triton().get_model_repository_index()
    assert [entry["name"] for entry in index] == [server.model, server.bytes_model]
    assert {entry["version"] for entry in index} == {server.v2_version}
    assert all(entry["state"] == "READY" and entry["reason"] == "" for entry in index)
    assert server.http.post("/v2/repository/index", json={"ready": True}).json() == index
    check_error(server.http.post("/v2/repository/index", json={"ready": "yes"}), 400, messages.INDEX_BODY)
    check_error(server.http.post("/v2/repository/index", content=b"[1"), 400, messages.INDEX_BODY)


def test_statistics_count_each_request(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = mnist_sample
    client = server.triton()
    before = client.get_inference_statistics(server.model)["model_stats"][0]
    for n in (1, 5, 10):
        client.infer(server.model, [image_input(images[:n])])
    with pytest.raises(InferenceServerException):
        client.infer(server.model, [image_input(images[:1]), image_input(images[:1])])
    (after,) = client.get_inference_statistics(server.model)["model_stats"]
    assert after["name"] == server.model
    assert after["inference_count"] - before["inference_count"] == 16
    assert after["execution_count"] - before["execution_count"] == 3
    assert after["last_inference"] >= before["last_inference"] and after["last_inference"] > 0
    stages = after["inference_stats"]
    for name in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert stages[name]["count"] - before["inference_stats"][name]["count"] == 3, name
        assert stages[name]["ns"] > before["inference_stats"][name]["ns"], name
    assert stages["fail"]["count"] - before["inference_stats"]["fail"]["count"] == 1
    # The stages of a request fit inside it.
    parts = sum(stages[name]["ns"] for name in ("queue", "compute_input", "compute_infer", "compute_output"))
    assert parts <= stages["success"]["ns"]
    assert stages["cache_hit"] == stages["cache_miss"] == {"count": 0, "ns": 0}
    # Every field perf_analyzer reads as an unsigned integer is one.
    for key in ("inference_count", "execution_count", "last_inference"):
        assert type(after[key]) is int and after[key] >= 0
    assert all(type(v) is int for stage in stages.values() for v in stage.values())


def test_stats_is_not_a_model_name(server: Server) -> None:
    everything = server.http.get("/v2/models/stats")
    assert everything.status_code == 200, everything.text
    entries = everything.json()["model_stats"]
    assert [entry["name"] for entry in entries] == [server.model, server.bytes_model]
    # perf_analyzer reads the version as an integer (std::stoll) to find the model's entry.
    assert all(entry["version"] == server.v2_version == str(int(entry["version"])) for entry in entries)
    assert server.triton().get_inference_statistics()["model_stats"] == everything.json()["model_stats"]
    check_error(server.http.get("/v2/models/no-such-model/stats"), 404, "unknown model 'no-such-model'")
    check_error(server.http.get(f"/v2/models/{server.model}/versions/9/stats"), 404, "has no version '9'")


def test_aio_client(server: Server, mnist_sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_sample

    async def calls() -> tuple[Any, ...]:
        client = tritonclient_aio.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            tensor = tritonclient.InferInput("image", [8, 28, 28, 1], "FP32")
            tensor.set_data_from_numpy((images[:8].astype(np.float32) / 255).reshape(-1, 28, 28, 1))
            return (
                await client.get_model_metadata(server.model),
                await client.get_model_config(server.model),
                await client.get_inference_statistics(server.model),
                await client.get_model_repository_index(),
                await client.infer(server.model, [tensor]),
            )
        finally:
            await client.close()

    metadata, config, statistics, index, result = asyncio.run(calls())
    assert metadata["versions"] == [server.v2_version] and [t["name"] for t in metadata["inputs"]] == ["image"]
    assert config["name"] == server.model and config["input"][0]["name"] == "image"
    assert statistics["model_stats"][0]["name"] == server.model
    assert server.model in {entry["name"] for entry in index}
    assert (result.as_numpy("digit") == labels[:8]).mean() >= 0.75


def test_statistics_sum_every_worker(tmp_path: Path) -> None:
    """With two workers, any worker answers with the whole server's counts (connections land on either)."""
    live = LiveServer(tmp_path / "service.log", ["--workers", "2"], {"DIGITS_ACCESS_LOG": "false"})
    try:
        live.start()
        live.wait_workers(2)
        name = orjson.loads(live.request("GET", "/model")[2])["name"]
        body = orjson.dumps({"inputs": [image_tensor([0.5] * 784)]})
        for _ in range(12):  # each on a new connection, so the kernel spreads them over both workers
            status, _, _ = live.request("POST", f"/v2/models/{name}/infer", body, {"content-type": "application/json"})
            assert status == 200
        for _ in range(6):
            (entry,) = orjson.loads(live.request("GET", f"/v2/models/{name}/stats")[2])["model_stats"]
            assert entry["inference_stats"]["success"]["count"] == 12
            assert entry["inference_count"] == 12
    finally:
        live.stop()


def test_model_stats_shape_without_any_request() -> None:
    entry = stats.model_stats("m", "1", {})
    assert entry["inference_count"] == entry["execution_count"] == entry["last_inference"] == 0
    stages = entry["inference_stats"]
    assert isinstance(stages, dict) and set(stages) == {*stats.STAGES, *stats.ZERO_STAGES}
    assert spec.EXTENSIONS[0] == "binary_tensor_data"


def test_served_model_resolution_for_every_transport() -> None:
    """What HTTP paths and gRPC requests (where no version is "") name, resolved the same way."""
    from service import errors
    from service.config import Settings
    from service.inference import Classifier
    from service.routes import Runtime
    from service.v2 import parse

    settings = Settings(workers=1)
    runtime = Runtime(settings, classifier=Classifier(settings.model_path))
    assert runtime.classifier is not None
    name, full = runtime.classifier.name, runtime.classifier.version
    major = full.split(".")[0]  # Triton's integer version
    for version in (None, "", major, full):
        assert parse.served_model(runtime, name + spec.BYTES_SUFFIX, version)[1].inputs == (spec.IMAGE_BYTES_TENSOR,)
    for model, version in (("stats", None), (name, str(int(major) + 1)), (name, f"{major}.0")):
        with pytest.raises(errors.NotFound):
            parse.served_model(runtime, model, version)
    with pytest.raises(errors.Unavailable):
        parse.served_model(Runtime(settings), name, None)
    assert stats.model_stats(name, "1", {})["version"] == "1"
