"""Passthrough routes in capline endpoint, in front of an OpenAI-style model
server (the `/v1/chat/completions` and `/v1/completions` of vLLM, TGI or
SGLang), driven by the `openai` Python client and by `requests`:

- a streamed chat completion (server-sent events, one token every 100 ms):
  the client reads each event as it comes, the first long before the last;
  the bytes the client got are the model's, unchanged; the record captured
  under the variant's folder holds the request and the whole stream;
- a non-streamed completion, an error answer (passed on, not captured), the
  query string, the target-variant header;
- `GET /v1/models` (the openai client's `models.list()`) and `HEAD`:
  forwarded with the same authentication, never captured; other methods
  not forwarded; `GET /v1/models/{id}` (`models.retrieve()`) through a
  `/v1/models/*` route, and no path that could resolve outside it;
- authentication: bearer tokens and SigV4 both accepted, anything else
  refused before the model sees it, and capline's credentials never passed
  on to the model;
- broken streams: the model breaking off breaks the client's stream off
  (not captured, or captured partial with `CaptureBrokenStreams: Partial`);
  a client breaking off closes the model's connection; both counted;
- a model that is down gets 502.

Usage: python passthrough_test.py CAPLINE_BIN
"""

import base64
import http.client
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import openai
import requests

from container import ContainerModel, free_port, serve, start_endpoint

capline_bin = sys.argv[1]
TOKEN = "sk-capline-test-0123456789"
TOKENS = 8
seen = []  # (path, headers) of every request the model got
client_gone = threading.Event()  # the model's write failed: its client left


def chunk(i, model="llama"):
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
             "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
    return f"data: {json.dumps(event)}\n\n".encode()


SSE = b"".join(chunk(i) for i in range(TOKENS)) + b"data: [DONE]\n\n"
LLAMA = {"id": "llama", "object": "model", "created": 1, "owned_by": "vllm"}
MODELS = json.dumps({"object": "list", "data": [LLAMA]}).encode()
READS = {"/v1/models": MODELS, "/v1/models/llama": json.dumps(LLAMA).encode()}  # GET path: answer


class OpenAIStyle(ContainerModel):
    """`/v1/chat/completions` and `/v1/completions`: `"stream": true` answers
    with chunked server-sent events 100 ms apart, else one JSON answer.
    A prompt of "break" stops after 3 events without the last chunk; "bad"
    gets a 400 in OpenAI's error shape."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path != "/ping":  # the container contract's health check is not a client's request
            seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        out = READS.get(self.path)
        if out is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(out)

    do_HEAD = do_GET

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        req = json.loads(body)
        prompt = req.get("prompt") or req["messages"][-1]["content"]
        if prompt == "bad":
            out = b'{"object":"error","message":"bad prompt","type":"BadRequestError","code":400}'
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        if not req.get("stream"):
            out = json.dumps({"id": "cmpl-1", "object": "text_completion", "model": req["model"],
                              "choices": [{"index": 0, "text": f"echo {prompt}", "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [chunk(i, req["model"]) for i in range(TOKENS)] + [b"data: [DONE]\n\n"]
        slow = prompt == "slow"
        try:
            for n, e in enumerate(events):
                if prompt == "break" and n == 3:
                    self.connection.shutdown(socket.SHUT_RDWR)  # no last chunk: broken off
                    self.close_connection = True
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(e), e))
                self.wfile.flush()
                time.sleep(0.5 if slow else 0.1)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            client_gone.set()
            self.close_connection = True


model = serve(OpenAIStyle)
model_url = f"http://127.0.0.1:{model.server_port}"


def endpoint(name, extra):
    work = tempfile.mkdtemp()
    port = free_port()
    config = {
        "EndpointName": "llm",
        "Listen": f"127.0.0.1:{port}",
        "AdminListen": f"127.0.0.1:{free_port()}",
        "UpstreamTimeoutSeconds": 3,
        "PassthroughRoutes": ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/*"],
        "ProductionVariants": [{"VariantName": "A", "ModelUrl": model_url},
                               {"VariantName": "B", "InitialVariantWeight": 0, "ModelUrl": model_url}],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"file://{os.path.join(work, 'capture')}",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        },
        "Engine": {"SpoolDir": os.path.join(work, "spool")},
        **extra,
    }
    proc = start_endpoint(capline_bin, config, work, name)
    return proc, config, f"http://127.0.0.1:{port}", os.path.join(work, "capture")


def metrics(config):
    return urllib.request.urlopen(f"http://{config['AdminListen']}/metrics", timeout=10).read().decode()


def stop_and_read(proc, dest):
    """Stops the endpoint (SIGTERM delivers everything) and reads what it captured: {variant: [record]}."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    out = {}
    for d, _, files in os.walk(dest):
        for f in files:
            if f.endswith(".jsonl"):
                variant = os.path.relpath(d, dest).split(os.sep)[1]
                out.setdefault(variant, []).extend(json.loads(l) for l in open(os.path.join(d, f)))
    return out


def data(payload):
    if payload["encoding"] == "BASE64":
        return base64.b64decode(payload["data"])
    return payload["data"].encode()


def sigv4(url, body):
    """A SigV4-signed POST (service sagemaker), as any AWS SDK would sign it."""
    r = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body,
                                       headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials("AKIDPASS", "secret-pass"), "sagemaker",
                            "us-east-1").add_auth(r)
    return dict(r.headers.items())


# --- the main endpoint: bearer tokens and access keys ------------------------
proc, config, base, dest = endpoint("main", {
    "BearerTokens": [TOKEN],
    "AccessKeys": [{"AccessKeyId": "AKIDPASS", "SecretAccessKey": "secret-pass"}],
})
client = openai.OpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0)

# A streamed chat completion, read event by event as it comes.
started = time.monotonic()
stream = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hello"}],
                                        stream=True, extra_headers={"X-Amzn-SageMaker-Inference-Id": "chat-1"})
arrivals, text = [], ""
for event in stream:
    arrivals.append(time.monotonic() - started)
    text += event.choices[0].delta.content or ""
assert text == "".join(f"tok{i} " for i in range(TOKENS)), text
assert len(arrivals) == TOKENS, arrivals
# Eight events 100 ms apart: the first arrives long before the last.
assert arrivals[0] < arrivals[-1] - 0.5, arrivals
print(f"openai client, streamed chat completion: {TOKENS} events; the first after {arrivals[0] * 1000:.0f} ms, "
      f"the last after {arrivals[-1] * 1000:.0f} ms (the model takes {TOKENS * 100} ms)")
path, headers = seen[-1]
assert path == "/v1/chat/completions", path
lower = {k.lower() for k in headers}
assert "authorization" not in lower, "capline's bearer token reached the model"
assert "x-amzn-sagemaker-inference-id" in lower

# The same stream with requests, bytes as they arrive: unchanged.
body = json.dumps({"model": "llama", "messages": [{"role": "user", "content": "raw"}], "stream": True}).encode()
r = requests.post(f"{base}/v1/chat/completions", data=body, stream=True, timeout=10,
                  headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                           "X-Amzn-SageMaker-Inference-Id": "raw-1"})
assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream; charset=utf-8", r.headers
assert r.headers["X-Amzn-Invoked-Production-Variant"] == "A", r.headers
assert r.headers.get("Cache-Control") == "no-cache", r.headers
raw = b"".join(r.iter_content(chunk_size=None))
assert raw == SSE, raw
print("requests: the bytes through capline are the model's, byte for byte, with its headers")

# Not streamed, on the other route, with a query string, to variant B by header.
done = client.completions.create(model="llama", prompt="plain", extra_query={"api-version": "1"},
                                 extra_headers={"X-Amzn-SageMaker-Target-Variant": "B",
                                                "X-Amzn-SageMaker-Inference-Id": "plain-1"})
assert done.choices[0].text == "echo plain", done
path, headers = seen[-1]
assert path == "/v1/completions?api-version=1", path
assert "x-amzn-sagemaker-target-variant" not in {k.lower() for k in headers}
print("openai client, non-streamed completion: query string kept, target variant honoured")

# An error answer is the model's own, passed on, and not captured.
try:
    client.completions.create(model="llama", prompt="bad", extra_headers={"X-Amzn-SageMaker-Inference-Id": "bad-1"})
    raise AssertionError("the model's 400 must reach the client")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "bad prompt" in str(e), e
print("a model's 400 reaches the client unchanged")

# The openai client lists models with GET /v1/models: forwarded, authenticated, never captured.
models = client.models.list()
assert [m.id for m in models.data] == ["llama"], models
path, headers = seen[-1]
assert path == "/v1/models" and "authorization" not in {k.lower() for k in headers}, (path, headers)
head = requests.head(f"{base}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
assert head.status_code == 200 and head.headers["Content-Length"] == str(len(MODELS)), head.headers
before = len(seen)
nobody = requests.get(f"{base}/v1/models", timeout=10)
assert nobody.status_code == 403, nobody.status_code
other = requests.delete(f"{base}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
assert other.status_code == 404, other.status_code
assert len(seen) == before, "a refused or unlisted request reached the model"
print("openai client, models.list(): GET (and HEAD) forwarded with the same auth, not captured; DELETE not forwarded")

# A `/*` route: models.retrieve() asks for GET /v1/models/{id}. Paths the
# model server could resolve outside /v1/models/ (dot segments, encoded
# dots, empty segments) or that are not under it get 404 from capline.
assert client.models.retrieve("llama").id == "llama"
assert seen[-1][0] == "/v1/models/llama", seen[-1]
before = len(seen)
for raw_path in ["/v1/models/../admin", "/v1/models/%2e%2e/admin", "/v1/models//llama", "/v1/models/",
                 "/v1/modelsx/llama", "/v1/models/./llama"]:
    conn = http.client.HTTPConnection(base[len("http://"):], timeout=10)
    conn.request("GET", raw_path, headers={"Authorization": f"Bearer {TOKEN}"})
    status = conn.getresponse().status
    conn.close()
    assert status == 404, (raw_path, status)
assert len(seen) == before, ("a path outside the route reached the model", seen[before:])
print("a /v1/models/* route: models.retrieve() forwarded; dot, encoded and empty segments not")

# Authentication: a wrong token, none, a SigV4 signature.
before = len(seen)
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="sk-wrong-0123456789abcdef", max_retries=0).completions.create(
        model="llama", prompt="no")
    raise AssertionError("a wrong bearer token must be refused")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e
anon = requests.post(f"{base}/v1/completions", data=b'{"model":"llama","prompt":"x"}', timeout=10)
assert anon.status_code == 403 and anon.headers["x-amzn-errortype"] == "InvalidSignatureException", anon
assert len(seen) == before, "an unauthenticated request reached the model"
signed_body = json.dumps({"model": "llama", "prompt": "signed"}).encode()
url = f"{base}/v1/completions"
ok = requests.post(url, data=signed_body, headers=sigv4(url, signed_body), timeout=10)
assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "echo signed", ok.text
assert not any(k.lower() == "authorization" or k.lower().startswith("x-amz-date") for k in seen[-1][1])
print("auth: bearer token or SigV4 accepted; wrong, missing or unsigned refused before the model; "
      "capline's credentials never passed on")

# The model breaks off: so does the client's stream; not captured here.
broke = None
try:
    for _ in client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "break"}],
                                            stream=True, extra_headers={"X-Amzn-SageMaker-Inference-Id": "broken-1"}):
        pass
except Exception as e:  # whatever the client's HTTP stack calls an incomplete chunked body
    broke = f"{type(e).__module__}.{type(e).__name__}"
assert broke is not None, "a broken stream must end in an error for the client"
print(f"a stream the model breaks off breaks the client's off too ({broke})")

# The client breaks off after the first event: the model's connection is closed.
gone_body = json.dumps({"model": "llama", "messages": [{"role": "user", "content": "slow"}], "stream": True}).encode()
host, port = base[len("http://"):].split(":")
sock = socket.create_connection((host, int(port)), timeout=10)
sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Authorization: Bearer " + TOKEN.encode() + b"\r\nX-Amzn-SageMaker-Inference-Id: gone-1\r\n"
             b"Content-Length: " + str(len(gone_body)).encode() + b"\r\n\r\n" + gone_body)
head = b""
while b"data: " not in head:
    head += sock.recv(65536)
sock.close()
assert client_gone.wait(10), "the model kept its connection after the client left"
print("a client that breaks off closes the model's connection")

m = metrics(config)
# chat-1, raw-1, plain-1, bad-1 (a 400, relayed whole), GET and HEAD /v1/models,
# GET /v1/models/llama and the signed one.
want = {"completed": 8, "model_broken": 1, "client_gone": 1}
for outcome, n in want.items():
    line = f'capline_endpoint_streams_total{{route="passthrough",outcome="{outcome}"}} {n}'
    assert line in m, (line, [l for l in m.splitlines() if "streams" in l])
captured = stop_and_read(proc, dest)
ids = {r["eventMetadata"].get("inferenceId", "-"): (v, r) for v, rs in captured.items() for r in rs}
assert set(ids) == {"chat-1", "raw-1", "plain-1", "-"}, sorted(ids)  # "-": the signed one
assert sum(len(rs) for rs in captured.values()) == 4, {v: len(rs) for v, rs in captured.items()}
variant, chat = ids["chat-1"]
assert variant == "A"
inp, out = chat["captureData"]["endpointInput"], chat["captureData"]["endpointOutput"]
assert inp["observedContentType"] == "application/json" and inp["encoding"] == "JSON", inp
assert json.loads(inp["data"])["messages"][0]["content"] == "hello", inp
assert out["observedContentType"] == "text/event-stream; charset=utf-8", out
assert data(out) == SSE, data(out)
assert data(ids["raw-1"][1]["captureData"]["endpointInput"]) == body
assert data(ids["raw-1"][1]["captureData"]["endpointOutput"]) == SSE
variant, plain = ids["plain-1"]
assert variant == "B", variant
assert json.loads(data(plain["captureData"]["endpointOutput"]))["choices"][0]["text"] == "echo plain"
print("captured under the variant's folder: the request, and the whole stream as one SageMaker record; "
      "errors, broken and abandoned streams not at all")

# --- CaptureBrokenStreams: Partial; no auth configured; a model that is down ----
proc, config, base, dest = endpoint("partial", {"CaptureBrokenStreams": "Partial"})
r = requests.post(f"{base}/v1/chat/completions", stream=True, timeout=10,
                  data=json.dumps({"model": "llama", "messages": [{"role": "user", "content": "break"}],
                                   "stream": True}).encode(),
                  headers={"Content-Type": "application/json", "Authorization": "Bearer the-model-s-own-key",
                           "X-Amzn-SageMaker-Inference-Id": "partial-1"})
got = b""
try:
    for piece in r.iter_content(chunk_size=None):
        got += piece
    raise AssertionError("a broken stream must end in an error")
except requests.exceptions.ChunkedEncodingError:
    pass
assert got == b"".join(chunk(i) for i in range(3)), got
# Without capline's own authentication, the client's Authorization is the model's.
assert seen[-1][1].get("authorization") == "Bearer the-model-s-own-key", seen[-1][1]
m = metrics(config)
assert 'capline_endpoint_streams_total{route="passthrough",outcome="model_broken"} 1' in m
assert 'capline_endpoint_streams_captured_partial_total{route="passthrough"} 1' in m
big = requests.post(f"{base}/v1/completions", data=b"x" * (6 * 1024 * 1024 + 1), timeout=30)
assert big.status_code == 413, big.status_code  # the runtime API's MaxPayloadBytes, before the model
proc_down, config_down, base_down, _ = endpoint("down", {
    "ProductionVariants": [{"VariantName": "A", "ModelUrl": f"http://127.0.0.1:{free_port()}"}]})
r = requests.post(f"{base_down}/v1/completions", data=b'{"model":"m","prompt":"x"}', timeout=10)
assert r.status_code == 502 and r.headers["x-amzn-errortype"] == "ModelError", (r.status_code, r.text)
proc_down.kill()
captured = stop_and_read(proc, dest)
records = [r for rs in captured.values() for r in rs]
assert [r["eventMetadata"]["inferenceId"] for r in records] == ["partial-1"], records
assert data(records[0]["captureData"]["endpointOutput"]) == got
print("CaptureBrokenStreams Partial: a broken stream captured with what the model had sent, and counted; "
      "without auth configured, the client's Authorization reaches the model; a model that is down: 502")
print("metrics:", " ".join(l for l in m.splitlines() if l.startswith("capline_endpoint_streams")))
