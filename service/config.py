"""Service settings: command-line options and ``DIGITS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The trained model shipped with the project (``models/`` beside the packages).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The int8 build of the improved model: faster than fp32 at no loss of accuracy (docs/benchmarks.md).
DEFAULT_MODEL = MODELS_DIR / "mnist-improved-int8.onnx"
#: The pair model /read uses for touching digits (training/pairs.py).
DEFAULT_PAIR_MODEL = MODELS_DIR / "mnist-pairs.onnx"


class Settings(BaseSettings):
    """Every option of the service. Environment variables are the names upper-cased, with ``DIGITS_``."""

    model_config = SettingsConfigDict(env_prefix="DIGITS_", env_file=None, extra="ignore")

    # --- Server
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 in containers.")
    port: int = Field(8000, ge=1, le=65535)
    grpc_port: int = Field(8001, ge=0, le=65535, description="KServe v2 gRPC port (Triton's 8001); 0: no gRPC.")
    workers: int = Field(2, ge=1, le=64, description="Worker processes, each with its own model session.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = Field(True, description="Structured JSON-lines logs (false: plain text).")

    # --- Model
    model_path: Path = Field(DEFAULT_MODEL, description="ONNX model; its metadata is the .json beside it.")
    verify_sha256: bool = Field(True, description="Refuse to start if the model's sha256 differs from its metadata.")
    strictness: float | None = Field(
        None,
        ge=0,
        le=1,
        description="is_digit is digit_score >= strictness; unset: the model's own threshold (its metadata's "
        "open_set.threshold). Higher refuses more non-digits, and more poorly written digits.",
    )
    pair_model_path: Path | None = Field(
        DEFAULT_PAIR_MODEL,
        description="/read's model for two touching digits (training/pairs.py); empty: /read only cuts them.",
    )
    intra_op_threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads per worker.")
    inter_op_threads: int = Field(1, ge=1, le=64, description="onnxruntime inter-op threads per worker.")

    # --- Dynamic batching of concurrent /predict calls
    batch_max_size: int = Field(64, ge=1, le=1024, description="Most images in one session.run call.")
    prepare_threads: int = Field(
        2, ge=1, le=32, description="Threads per worker that read big requests' headers and convert JSON pixel batches."
    )
    batch_max_delay_ms: float = Field(
        0.0, ge=0, le=100, description="How long the batcher waits for more requests to fill a batch."
    )

    # --- Costly images (service/lanes.py, docs/cost.md)
    light_pixels: int = Field(
        1_000_000, ge=0, description="Most decoding work (pixels) a request may need to be decoded in the batcher."
    )
    decoder_processes: int = Field(1, ge=1, le=16, description="Processes per worker that decode costly images.")
    decoder_budget_pixels: int = Field(
        96_000_000, ge=1, description="Pixels of costly images a worker decodes at once; over it: 429."
    )
    decoder_timeout_s: float = Field(8.0, gt=0, description="Longest a costly request may wait and decode.")
    decoder_memory_mb: int = Field(
        288, ge=128, description="Data memory cap of each decoder process (MB); over it: the image is refused."
    )

    # --- Limits
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body, in bytes.")
    max_batch_images: int = Field(256, ge=1, description="Most images in one batch request.")
    max_image_pixels: int = Field(
        24_000_000, ge=784, description="Largest decoded image (width x height), against decompression bombs."
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Longest time one request may take.")
    shutdown_timeout_s: float = Field(20.0, gt=0, description="Grace period for in-flight requests on SIGTERM.")
    shutdown_drain_s: float = Field(
        1.0, ge=0, description="On SIGTERM, how long readiness reports 503 before the listener closes."
    )
    access_log: bool = Field(True, description="Log one JSON line per request.")

    # --- Security
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; empty: no authentication."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; empty: CORS off."
    )
    max_concurrent_per_client: int = Field(
        0, ge=0, description="Requests one client address may have in flight; 0: no limit."
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``DIGITS_API_KEYS=a,b`` → ``["a", "b"]``."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("strictness", "pair_model_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``DIGITS_STRICTNESS=`` (as in .env.example) means the model's own threshold; an empty pair model, none."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def metadata_path(self) -> Path:
        return self.model_path.with_suffix(".json")
