"""The Open Inference Protocol (KServe v2) over HTTP/REST, with Triton's binary tensor data extension.

Tensors of this service:

- input ``image``: FP32 ``[N, 28, 28, 1]``, already in MNIST form (0–1, white ink on black);
- input ``image_bytes``: BYTES ``[N]``, each element an encoded image file, preprocessed like
  ``/predict`` (base64 strings in JSON; length-prefixed elements as binary data);
- outputs ``probabilities`` FP32 ``[N, 10]`` and ``digit`` INT64 ``[N]``.

A request sends exactly one of the two inputs. Requests share the batch path, limits and metrics
of ``/predict/batch``; errors answer ``{"error": "..."}`` as the protocol asks, with 400 for every
bad input (where ``/predict`` says 415 or 422), 404 for an unknown model or version, and 413 for
the size limits.

Modules, as KServe splits its protocol code: ``spec`` (names and tensors), ``messages`` (what a
client can be told), ``parse`` (request → work), ``encode`` (results → response), ``schemas``
(OpenAPI), ``routes`` (the endpoints).
"""

from service.v2.routes import error_response, router

__all__ = ["error_response", "router"]
