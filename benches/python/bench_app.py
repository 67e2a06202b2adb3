"""The FastAPI app of the latency benchmark: the container contract, a CSV
row in, a probability out. With CAPLINE_CONFIG set, capline's ASGI
middleware captures every invocation (100 % sampling)."""

import json
import os

from fastapi import FastAPI, Request, Response

app = FastAPI()

if os.environ.get("CAPLINE_CONFIG"):
    import capline
    import capline.asgi

    engine = capline.Engine(json.loads(os.environ["CAPLINE_CONFIG"]))
    app.add_middleware(capline.asgi.CaptureMiddleware, engine=engine)


@app.get("/ping")
def ping():
    return Response(status_code=200)


@app.post("/invocations")
async def invocations(request: Request):
    body = await request.body()
    return Response(b"0.%d" % (len(body) % 10), media_type="text/csv")
