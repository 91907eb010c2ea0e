"""The bare floor: a plain ASGI app on uvicorn that reads the whole body and answers a constant.

No framework, no multipart parsing, no decoding, no model: what uvicorn, httptools and uvloop cost
alone for one upload and one small JSON answer. Nothing served over HTTP from Python on this
stack can answer faster; ``floor.py`` adds FastAPI and python-multipart on top.

    uvicorn benchmarks.bare:app --workers 2
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

#: The same answer as floor.py's, serialised once.
ANSWER = b'{"digit":0,"confidence":1.0,"probabilities":[1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0]}'
READY = b'{"status":"ready"}'
HEADERS = [(b"content-type", b"application/json")]


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """Read the request body to its end, then send the constant answer (or readiness for a GET)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    body = READY if scope["method"] == "GET" else ANSWER
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
    """ASGI's lifespan protocol with nothing to start or stop."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
