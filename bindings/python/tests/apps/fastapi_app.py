"""A FastAPI model server (the SageMaker container contract) with capline's
ASGI middleware, as a user writes it. Config in $CAPLINE_CONFIG (JSON)."""

import asyncio
import json
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

import capline
import capline.asgi
from model import answer

engine = capline.Engine(json.loads(os.environ["CAPLINE_CONFIG"]))


@asynccontextmanager
async def lifespan(app):
    yield
    engine.close()


app = FastAPI(lifespan=lifespan)
app.add_middleware(
    capline.asgi.CaptureMiddleware, engine=engine, paths=("/invocations", "/v1/chat/completions")
)


@app.get("/ping")
def ping():
    return Response(status_code=200)


@app.get("/stats")
def stats():
    return engine.stats()


@app.post("/invocations")
async def invocations(request: Request):
    body = await request.body()
    if body.startswith(b"stream:"):
        n = int(body[len(b"stream:"):])

        async def chunks():
            for i in range(n):
                yield f"chunk{i},".encode()

        return StreamingResponse(chunks(), media_type="text/csv")
    status, ctype, out = answer(body, request.headers.get("content-type", ""))
    return Response(out, status_code=status, media_type=ctype)


@app.post("/other")
async def other(request: Request):
    return Response(await request.body(), media_type="text/plain")


@app.post("/v1/chat/completions")
async def chat(request: Request):
    """An OpenAI-style streamed completion: server-sent events, one per token."""
    req = await request.json()
    n, delay = int(req.get("max_tokens", 4)), float(req.get("delay", 0))

    async def events():
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield ("data: " + json.dumps({"choices": [{"delta": {"content": f"tok{i} "}}]}) + "\n\n").encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
