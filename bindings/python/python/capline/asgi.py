"""ASGI middleware: capture the invocations a Starlette, FastAPI or any ASGI
app serves, in one line::

    app.add_middleware(capline.asgi.CaptureMiddleware, engine=engine)   # FastAPI
    app = capline.asgi.CaptureMiddleware(app, engine)                   # any ASGI app

For each request to one of `paths` (default ``/invocations``, the SageMaker
container contract) it keeps a copy of the request body as the app reads it
and of the response body as the app sends it (streamed responses included),
and when the response is complete and its status is 2xx, offers the pair to
``engine.capture`` with both Content-Types and the
``X-Amzn-SageMaker-Inference-Id`` header. Every message is passed on before
anything is recorded, so the response is never delayed or altered. A body
larger than the engine's ``max_record_bytes`` is not buffered past that: the
record is counted as ``dropped_too_large`` instead.
"""

from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Optional

from ._capline import Engine
from ._pair import _Body, offer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INFERENCE_ID = b"x-amzn-sagemaker-inference-id"


def _header(headers: Iterable, name: bytes) -> Optional[str]:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class CaptureMiddleware:
    """Captures the 2xx invocations `app` serves on `paths` into `engine`."""

    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        *,
        paths: Iterable[str] = ("/invocations",),
        methods: Iterable[str] = ("POST",),
    ) -> None:
        self.app = app
        self.engine = engine
        self.paths = frozenset(paths)
        self.methods = frozenset(m.upper() for m in methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("path") not in self.paths
            or scope.get("method") not in self.methods
        ):
            await self.app(scope, receive, send)
            return
        engine = self.engine
        limit = engine.max_record_bytes
        headers = scope.get("headers") or ()
        request = _Body(limit)
        response = _Body(limit)
        state: dict = {"status": 0, "type": None, "done": False}

        async def tee_receive() -> Message:
            message = await receive()
            if message.get("type") == "http.request":
                request.add(message.get("body", b""))
            return message

        async def tee_send(message: Message) -> None:
            # Passed on first: capture never delays the response.
            await send(message)
            kind = message.get("type")
            if kind == "http.response.start":
                state["status"] = message.get("status", 0)
                state["type"] = _header(message.get("headers") or (), b"content-type")
            elif kind == "http.response.body":
                response.add(message.get("body", b""))
                if not message.get("more_body", False):
                    state["done"] = True

        await self.app(scope, tee_receive, tee_send)
        if state["done"]:
            offer(
                engine,
                state["status"],
                request,
                response,
                _header(headers, b"content-type"),
                state["type"],
                _header(headers, INFERENCE_ID),
            )
