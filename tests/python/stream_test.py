"""InvokeEndpointWithResponseStream through capline endpoint, with boto3's
own client and a streaming model (chunked `/invocations`, 10 chunks 100 ms
apart):

- the first PayloadPart reaches the client long before the model finishes;
- the parts, concatenated, are the model's answer, and the captured record's
  output is the same bytes, with the model's content type;
- the SageMaker Python SDK's streaming helpers (`Predictor.predict_stream`
  with its `LineIterator`) read the same stream line by line as it comes;
- a stream the model breaks off ends in an error for the client (boto3's
  EventStreamError, ModelStreamError) and is not captured;
- a client that breaks off mid-stream is counted, not captured, and the
  model's connection is closed.

Usage: python stream_test.py CAPLINE_BIN
"""

import base64
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
import botocore
import sagemaker
from sagemaker.iterators import LineIterator
from sagemaker.predictor import Predictor

from container import ContainerModel, free_port, serve, start_endpoint

capline_bin = sys.argv[1]


class Streaming(ContainerModel):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        n = 3 if body == b"break" else 10
        try:
            for i in range(n):
                chunk = f'data: {{"token": "t{i}"}}\n\n'.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.5 if body == b"slow" else 0.1)
        except (BrokenPipeError, ConnectionResetError):
            model_lost_client.set()
            self.close_connection = True
            return
        if body == b"break":
            self.connection.shutdown(socket.SHUT_RDWR)  # no last chunk: the stream breaks off
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")


model_lost_client = threading.Event()
model = serve(Streaming)
work = tempfile.mkdtemp()
port = free_port()
dest = os.path.join(work, "capture")
config = {
    "EndpointName": "llm",
    "Listen": f"127.0.0.1:{port}",
    "AdminListen": f"127.0.0.1:{free_port()}",
    "UpstreamTimeoutSeconds": 5,
    "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": f"http://127.0.0.1:{model.server_port}"}],
    "DataCaptureConfig": {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"file://{dest}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
    },
    "Engine": {"SpoolDir": os.path.join(work, "spool")},
}
proc = start_endpoint(capline_bin, config, work)

rt = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="x", aws_secret_access_key="x")
started = time.monotonic()
r = rt.invoke_endpoint_with_response_stream(EndpointName="llm", Body=b'{"prompt": "hi"}',
                                            ContentType="application/json", InferenceId="s-1")
assert r["ContentType"] == "text/event-stream", r["ContentType"]
assert r["InvokedProductionVariant"] == "AllTraffic", r
first, parts = None, []
for event in r["Body"]:
    if first is None:
        first = time.monotonic() - started
    parts.append(event["PayloadPart"]["Bytes"])
total = time.monotonic() - started
got = b"".join(parts)
assert got == b"".join(f'data: {{"token": "t{i}"}}\n\n'.encode() for i in range(10)), got
assert first < total - 0.5, (first, total)
print(f"response stream: {len(parts)} PayloadParts; the first after {first * 1000:.0f} ms, the last after "
      f"{total * 1000:.0f} ms (the model takes 1 s)")

# The SageMaker Python SDK's streaming helper, line by line as they come.
session = sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1", aws_access_key_id="x",
                                                       aws_secret_access_key="x"),
                            sagemaker_client=boto3.client("sagemaker", region_name="us-east-1",
                                                          aws_access_key_id="x", aws_secret_access_key="x"),
                            sagemaker_runtime_client=rt)
predictor = Predictor("llm", sagemaker_session=session)
started = time.monotonic()
lines, times = [], []
for line in predictor.predict_stream(b'{"prompt": "sdk"}', inference_id="sdk-1",
                                     initial_args={"ContentType": "application/json"}, iterator=LineIterator):
    times.append(time.monotonic() - started)
    lines.append(line)
data_lines = [l for l in lines if l]
assert data_lines == [f'data: {{"token": "t{i}"}}'.encode() for i in range(10)], lines
assert times[0] < times[-1] - 0.5, times
print(f"SageMaker SDK Predictor.predict_stream with LineIterator: {len(data_lines)} lines; the first after "
      f"{times[0] * 1000:.0f} ms, the last after {times[-1] * 1000:.0f} ms")

try:
    for event in rt.invoke_endpoint_with_response_stream(EndpointName="llm", Body=b"break",
                                                         ContentType="text/plain", InferenceId="s-broken")["Body"]:
        pass
    raise AssertionError("a broken stream must end in an error")
except botocore.exceptions.EventStreamError as e:
    assert "ModelStreamError" in str(e), e
print("a stream the model breaks off ends in ModelStreamError for the client")

# The client breaks off after the first part: the model's connection is closed.
r = rt.invoke_endpoint_with_response_stream(EndpointName="llm", Body=b"slow", ContentType="text/plain",
                                            InferenceId="s-gone")
next(iter(r["Body"]))
r["Body"]._raw_stream.close()
assert model_lost_client.wait(10), "the model kept its connection after the client left"
print("a client that breaks off mid-stream closes the model's connection")

metrics = urllib.request.urlopen(f"http://{config['AdminListen']}/metrics", timeout=10).read().decode()
for outcome, n in [("completed", 2), ("model_broken", 1), ("client_gone", 1)]:
    line = f'capline_endpoint_streams_total{{route="response_stream",outcome="{outcome}"}} {n}'
    assert line in metrics, (line, metrics)
proc.send_signal(signal.SIGTERM)
assert proc.wait(timeout=60) == 0
records = []
for d, _, files in os.walk(dest):
    records += [json.loads(l) for f in files if f.endswith(".jsonl") for l in open(os.path.join(d, f))]
ids = {r["eventMetadata"]["inferenceId"]: r for r in records}
assert set(ids) == {"s-1", "sdk-1"}, sorted(ids)
out = ids["s-1"]["captureData"]["endpointOutput"]
assert out["observedContentType"] == "text/event-stream" and out["encoding"] == "BASE64", out
assert base64.b64decode(out["data"]) == got
print("captured once, when the stream ended: the whole answer as one record; the broken stream not at all")
print("metrics:", " ".join(l for l in metrics.splitlines() if l.startswith("capline_endpoint_streams_total")))
