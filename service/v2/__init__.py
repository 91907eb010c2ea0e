"""The Open Inference Protocol (KServe v2) over HTTP/REST, with Triton's binary tensor data,
model configuration, statistics and repository index extensions.

One classifier, two model names (``spec.served_models``), so that each lists one input that a
generic tool can fill:

- ``<name>`` (``mnist-improved``): input ``image``, FP32 ``[N, 28, 28, 1]`` in MNIST form (0–1,
  white ink on black; values outside 0–1 are clipped). It still accepts ``image_bytes``;
- ``<name>-bytes``: input ``image_bytes``, BYTES ``[N, 1]`` (or ``[N]``), each element an encoded
  image file, preprocessed like ``/predict``;
- outputs of both: ``probabilities`` FP32 ``[N, 10]``, ``digit`` INT64 ``[N]``, ``is_digit`` BOOL
  ``[N]`` and ``digit_score`` FP32 ``[N]``.

Requests share the batch path, limits and metrics of ``/predict/batch``; every error, unknown
routes included, answers ``{"error": "..."}``: 400 for a bad input (where ``/predict`` says 415 or
422), 404 for an unknown model, version or path, 405 for another method, 413 for the size limits.

Modules, as KServe splits its protocol code: ``spec`` (names, tensors, versions), ``messages``
(what a client can be told), ``parse`` (request → work), ``encode`` (results → response, metadata,
configuration), ``stats`` (Triton's statistics), ``schemas`` (OpenAPI), ``routes`` (the endpoints).
"""

from service.v2.routes import error_response, router

__all__ = ["error_response", "router"]
