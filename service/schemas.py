"""Request and response schemas. They document the API (OpenAPI) and name what each carries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

PROBABILITIES_EXAMPLE: list[JsonValue] = [0.0, 0.0, 0.0001, 0.0002, 0.0, 0.0, 0.0, 0.9996, 0.0, 0.0001]
#: An MNIST test digit (a 7), 28x28 PNG.
PNG_BASE64_EXAMPLE = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAwUlEQVR42mNgGDaAEUKFpD77sfTFHeyS9xQYGBg+X4UKPuk6w8DA"
    "wMDAAuGm6l/TMnSweCzLwPDntSTDozPIOhkYGBgYBA3PmDIw/Lh1XShnGi5nBP+9KIRLTuzl/2AokwlDMlv0/U1cGq1//rPD6fHW"
    "f7tZcclxnv1hhVNj3b9tOOW8f3+wxCUnfPffMlxyzKf/3VbGJan2758vLjn5B/+KGXF78Z8JLjnbT+iSSGFrw8Nw9wuKJAsy56Lz"
    "O+ITGABpETyQcCy90wAAAABJRU5ErkJggg=="
)


class Prediction(BaseModel):
    """The model's answer for one image."""

    digit: int = Field(ge=0, le=9, description="The most likely digit.")
    confidence: float = Field(ge=0, le=1, description="The probability of that digit.")
    probabilities: list[float] = Field(
        min_length=10, max_length=10, description="Probability of 0…9, given that the image shows a digit."
    )
    is_digit: bool = Field(
        description="Whether the image shows a digit at all: digit_score >= the strictness (DIGITS_STRICTNESS, "
        "by default the model's threshold). When false, `digit` is only the best guess."
    )
    digit_score: float = Field(
        ge=0,
        le=1,
        description="The model's calibrated probability that the image shows a digit at all, rather than a letter, "
        "a symbol, a scribble or noise. Models without a digit_score output (the baseline) always give 1.0.",
    )
    input: list[list[float]] | None = Field(
        None,
        description="The 28x28 image the model saw (white ink on black, 0–1); only with include_input=true.",
    )


class SinglePrediction(Prediction):
    """``POST /predict``: one prediction and the model version that made it."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "digit": 7,
                    "confidence": 0.9996,
                    "probabilities": PROBABILITIES_EXAMPLE,
                    "is_digit": True,
                    "digit_score": 0.9987,
                    "model_version": "1.0.0",
                }
            ]
        },
    )
    model_version: str


class BatchPrediction(BaseModel):
    """``POST /predict/batch``: one prediction per image, in input order."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        {
                            "digit": 7,
                            "confidence": 0.9996,
                            "probabilities": PROBABILITIES_EXAMPLE,
                            "is_digit": True,
                            "digit_score": 0.9987,
                        }
                    ],
                    "model_version": "1.0.0",
                }
            ]
        },
    )
    predictions: list[Prediction]
    model_version: str


class ImageRequest(BaseModel):
    """One encoded image file (PNG, JPEG, WebP, BMP, GIF or TIFF), base64."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"image": PNG_BASE64_EXAMPLE}]})
    image: str = Field(description="Base64 of the image file's bytes.")


class PixelsRequest(BaseModel):
    """A 28x28 image already in MNIST form: white ink on black, values 0–255."""

    pixels: list[list[float]] = Field(min_length=28, max_length=28, description="28 rows of 28 numbers, 0–255.")


class BatchImagesRequest(BaseModel):
    """Many encoded image files, base64."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"images": [PNG_BASE64_EXAMPLE]}]})
    images: list[str] = Field(min_length=1, description="Base64 of each image file's bytes.")


class BatchPixelsRequest(BaseModel):
    """N images already in MNIST form: N x 28 x 28 values 0–255."""

    pixels: list[list[list[float]]] = Field(min_length=1, description="N images of 28 rows of 28 numbers.")


class ErrorResponse(BaseModel):
    """Every error: what was wrong and what to send instead."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "no digit found: the image is blank or has too little contrast"}]}
    )
    detail: str


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class ModelInfo(BaseModel):
    """The served model's metadata and the runtime settings it runs with."""

    model_config = ConfigDict(protected_namespaces=())
    name: str
    version: str
    sha256: str
    file: str
    metadata: dict[str, Any]
    runtime: dict[str, Any]
