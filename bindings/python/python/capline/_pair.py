"""What the ASGI and WSGI middleware share: a body kept up to the record
limit, and offering a finished exchange to the engine."""

from typing import Optional

from ._capline import Engine

OCTET_STREAM = "application/octet-stream"


class _Body:
    """Chunks of one body, kept while they stay within `limit` bytes."""

    __slots__ = ("chunks", "size", "limit", "too_large")

    def __init__(self, limit: int) -> None:
        self.chunks: list = []
        self.size = 0
        self.limit = limit
        self.too_large = False

    def add(self, chunk: bytes) -> None:
        if self.too_large or not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.too_large = True
            self.chunks = []
        else:
            self.chunks.append(chunk)

    def value(self) -> bytes:
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)


def offer(
    engine: Engine,
    status: int,
    request: _Body,
    response: _Body,
    request_type: Optional[str],
    response_type: Optional[str],
    inference_id: Optional[str],
) -> None:
    """Offers a complete exchange: 2xx only; a body past the limit is
    counted as `dropped_too_large`, not captured."""
    if not 200 <= status < 300:
        return
    if request.too_large or response.too_large:
        engine.count_too_large()
        return
    engine.capture(
        request.value(),
        response.value(),
        request_content_type=request_type or OCTET_STREAM,
        response_content_type=response_type or OCTET_STREAM,
        inference_id=inference_id,
    )
