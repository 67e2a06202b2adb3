"""WSGI middleware: capture the invocations a Flask, Django or any WSGI app
serves, in one line::

    app.wsgi_app = capline.wsgi.CaptureMiddleware(app.wsgi_app, engine)   # Flask
    application = capline.wsgi.CaptureMiddleware(application, engine)     # any WSGI app

For each request to one of `paths` (default ``/invocations``) it keeps a copy
of the request body as the app reads it from ``wsgi.input`` and of the
response body as the server takes it from the app (streamed responses
included), and when the server closes the response and its status is 2xx,
offers the pair to ``engine.capture`` with both Content-Types and the
``X-Amzn-SageMaker-Inference-Id`` header. Every chunk goes to the server
before it is recorded, so the response is never delayed or altered. A body
larger than the engine's ``max_record_bytes`` is not buffered past that: the
record is counted as ``dropped_too_large`` instead.
"""

from typing import Any, Callable, Iterable, Iterator, Optional

from ._capline import Engine
from ._pair import _Body, offer

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class _Input:
    """`wsgi.input` for the app, recording what it reads."""

    def __init__(self, stream: Any, body: _Body) -> None:
        self._stream = stream
        self._body = body

    def read(self, *args: Any) -> bytes:
        data = self._stream.read(*args)
        self._body.add(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        self._body.add(data)
        return data

    def readlines(self, *args: Any) -> list:
        lines = self._stream.readlines(*args)
        for line in lines:
            self._body.add(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._body.add(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Response:
    """The app's response iterable, recording what the server takes; on
    `close` (after the last chunk went out) the record is offered."""

    def __init__(self, chunks: Iterable[bytes], body: _Body, done: Callable[[bool], None]) -> None:
        self._chunks = chunks
        self._body = body
        self._done = done
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            yield chunk
            self._body.add(chunk)
        self._complete = True

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self._complete)


class CaptureMiddleware:
    """Captures the 2xx invocations `app` serves on `paths` into `engine`."""

    def __init__(
        self,
        app: WSGIApp,
        engine: Engine,
        *,
        paths: Iterable[str] = ("/invocations",),
        methods: Iterable[str] = ("POST",),
    ) -> None:
        self.app = app
        self.engine = engine
        self.paths = frozenset(paths)
        self.methods = frozenset(m.upper() for m in methods)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") not in self.paths
            or environ.get("REQUEST_METHOD") not in self.methods
        ):
            return self.app(environ, start_response)
        engine = self.engine
        limit = engine.max_record_bytes
        request = _Body(limit)
        response = _Body(limit)
        state: dict = {"status": 0, "type": None}
        environ["wsgi.input"] = _Input(environ["wsgi.input"], request)

        def tee_start_response(status: str, headers: list, exc_info: Optional[Any] = None) -> Callable:
            try:
                state["status"] = int(status.split(" ", 1)[0])
            except ValueError:
                state["status"] = 0
            for k, v in headers:
                if k.lower() == "content-type":
                    state["type"] = v
            write = start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            def tee_write(data: bytes) -> None:
                write(data)
                response.add(data)

            return tee_write

        def done(complete: bool) -> None:
            if complete:
                offer(
                    engine,
                    state["status"],
                    request,
                    response,
                    environ.get("CONTENT_TYPE"),
                    state["type"],
                    environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"),
                )

        return _Response(self.app(environ, tee_start_response), response, done)
