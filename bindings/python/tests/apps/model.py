"""The stand-in model both test apps serve."""

import json


def answer(body: bytes, content_type: str):
    """The stand-in model: (status, content type, body) or a stream."""
    if body == b"fail":
        return 500, "text/plain", b"model exploded"
    if content_type == "application/json":
        return 200, "application/json", json.dumps({"n": len(body)}).encode()
    if content_type == "text/csv":
        return 200, "text/csv; charset=utf-8", b"0.5," + str(len(body)).encode()
    return 200, "application/octet-stream", bytes(reversed(body))
