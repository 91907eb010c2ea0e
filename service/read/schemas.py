"""``POST /read``'s answer: the text, and each digit with its box and the model's outputs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import PROBABILITIES_EXAMPLE


class Box(BaseModel):
    """Where a digit is, in the uploaded image's pixels (after EXIF orientation)."""

    x: int = Field(ge=0, description="Left edge.")
    y: int = Field(ge=0, description="Top edge.")
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class ReadDigit(BaseModel):
    """One mark read as a digit, in reading order."""

    digit: int = Field(ge=0, le=9, description="The most likely digit.")
    confidence: float = Field(ge=0, le=1, description="The probability of that digit, given that it is a digit.")
    is_digit: bool = Field(
        description="Whether the mark is a digit (digit_score >= the strictness); others are not in text."
    )
    digit_score: float = Field(
        ge=0,
        le=1,
        description="Probability that the mark is a digit at all (1.0 for models without an open-set output).",
    )
    line: int = Field(ge=0, description="The line (row) the digit is on, from 0 at the top.")
    box: Box
    probabilities: list[float] = Field(min_length=10, max_length=10, description="Probability of 0…9.")


class Reading(BaseModel):
    """``POST /read``: the number written in the image."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "text": "27",
                    "digits": [
                        {
                            "digit": 2,
                            "confidence": 0.9991,
                            "is_digit": True,
                            "digit_score": 1.0,
                            "line": 0,
                            "box": {"x": 12, "y": 30, "width": 41, "height": 66},
                            "probabilities": [0.0, 0.0, 0.9991, 0.0005, 0.0, 0.0, 0.0, 0.0004, 0.0, 0.0],
                        },
                        {
                            "digit": 7,
                            "confidence": 0.9996,
                            "is_digit": True,
                            "digit_score": 1.0,
                            "line": 0,
                            "box": {"x": 61, "y": 28, "width": 38, "height": 70},
                            "probabilities": PROBABILITIES_EXAMPLE,
                        },
                    ],
                    "model_version": "1.0.0",
                }
            ]
        },
    )
    text: str = Field(description="The digits read, one line per row (joined by a newline); non-digits left out.")
    digits: list[ReadDigit] = Field(
        description="Every mark read, in reading order: left to right, lines top to bottom."
    )
    model_version: str
