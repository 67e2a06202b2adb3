"""A Flask model server (the SageMaker container contract) with capline's
WSGI middleware, as a user writes it. Config in $CAPLINE_CONFIG (JSON)."""

import atexit
import json
import os
import time

from flask import Flask, Response, request

import capline
import capline.wsgi
from model import answer

engine = capline.Engine(json.loads(os.environ["CAPLINE_CONFIG"]))
atexit.register(engine.close)

app = Flask(__name__)
app.wsgi_app = capline.wsgi.CaptureMiddleware(
    app.wsgi_app, engine, paths=("/invocations", "/v1/chat/completions")
)


@app.get("/ping")
def ping():
    return Response(status=200)


@app.get("/stats")
def stats():
    return engine.stats()


@app.post("/invocations")
def invocations():
    body = request.get_data()
    if body.startswith(b"stream:"):
        n = int(body[len(b"stream:"):])

        def chunks():
            for i in range(n):
                yield f"chunk{i},".encode()

        return Response(chunks(), mimetype="text/csv")
    status, ctype, out = answer(body, request.headers.get("Content-Type", ""))
    return Response(out, status=status, content_type=ctype)


@app.post("/other")
def other():
    return Response(request.get_data(), content_type="text/plain")


@app.post("/v1/chat/completions")
def chat():
    """An OpenAI-style streamed completion: server-sent events, one per token."""
    req = request.get_json()
    n, delay = int(req.get("max_tokens", 4)), float(req.get("delay", 0))

    def events():
        for i in range(n):
            if delay:
                time.sleep(delay)
            yield ("data: " + json.dumps({"choices": [{"delta": {"content": f"tok{i} "}}]}) + "\n\n").encode()
        yield b"data: [DONE]\n\n"

    return Response(events(), mimetype="text/event-stream")
