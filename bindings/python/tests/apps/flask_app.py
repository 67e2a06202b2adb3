"""A Flask model server (the SageMaker container contract) with capline's
WSGI middleware, as a user writes it. Config in $CAPLINE_CONFIG (JSON)."""

import atexit
import json
import os

from flask import Flask, Response, request

import capline
import capline.wsgi
from model import answer

engine = capline.Engine(json.loads(os.environ["CAPLINE_CONFIG"]))
atexit.register(engine.close)

app = Flask(__name__)
app.wsgi_app = capline.wsgi.CaptureMiddleware(app.wsgi_app, engine)


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
