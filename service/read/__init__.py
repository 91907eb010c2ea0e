"""``POST /read``: segment an image into digits, classify them in one batch, read them in order.

``ink`` (the image as an ink map, as /predict sees it), ``components`` (connected components),
``segment`` (marks, lines, cut paths, candidates), ``decode`` (the best reading), ``reader``
(one request's work), ``routes`` and ``schemas`` (the HTTP side).
"""
