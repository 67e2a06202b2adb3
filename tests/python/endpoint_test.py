"""`capline endpoint` driven by boto3's sagemaker-runtime client, unchanged
but for endpoint_url, with two model servers (the SageMaker container
contract: GET /ping, POST /invocations) behind it, and a third that is down.

Usage: python endpoint_test.py CAPLINE_BIN

Checks: the split by weight within 5 standard deviations, the target variant
header, InferenceId and custom attributes, CSV / JSON / binary bodies;
weights and sampling changed with `capline ctl` under traffic (no request
fails), the admin token, /metrics; SigV4 (boto3's signatures verify; unsigned,
wrong-secret and tampered requests get 403); the ModelError shape for a
model's 500, a slow model (upstream timeout) and a model that is down, 413
for an oversized body, a missing target variant, clients that disconnect
mid-request, /ping, the sidecar form (signed too); SIGTERM with a request in flight (it
finishes and is captured); then the files
in each variant's capture folder: valid (`capline cat --validate`), one
record per successful invocation, none for failures, ids and bodies intact.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer

import boto3
import botocore

from container import ContainerModel, free_port

capline_bin = sys.argv[1]


seen = {}  # request body -> times a model received it


def model(tag, keepalive=False):
    class Model(ContainerModel):
        if keepalive:
            # HTTP/1.1 keep-alive, and idle connections closed after 0.3 s
            # (as gunicorn's or uvicorn's keep-alive timeouts do).
            protocol_version = "HTTP/1.1"
            timeout = 0.3

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen[body] = seen.get(body, 0) + 1
            ctype = self.headers.get("Content-Type", "")
            if body == b"slow":
                time.sleep(2)
            if body == b"drain":
                time.sleep(0.5)
            if body == b"fail":
                out, status, otype = b"model exploded", 500, "text/plain"
            elif ctype == "application/json":
                out = json.dumps({"variant": tag, "n": len(body)}).encode()
                status, otype = 200, "application/json"
            elif ctype == "text/csv":
                out, status, otype = f"{tag},{len(body)}".encode(), 200, "text/csv"
            else:
                out, status, otype = bytes(reversed(body)), 200, "application/octet-stream"
            self.send_response(status)
            self.send_header("Content-Type", otype)
            self.send_header("Content-Length", str(len(out)))
            attrs = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            if attrs:
                self.send_header("X-Amzn-SageMaker-Custom-Attributes", attrs + ";seen-by=" + tag)
            try:
                self.end_headers()
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass  # capline gave up on a slow answer (its upstream timeout)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


work = tempfile.mkdtemp()
a, b = model("A", keepalive=True), model("B")
port = free_port()
admin_port = free_port()
dest = os.path.join(work, "capture")
config = {
    "EndpointName": "churn",
    "Listen": f"127.0.0.1:{port}",
    "AdminListen": f"127.0.0.1:{admin_port}",
    "AdminToken": "s3cret",
    "AccessKeys": [{"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret"}],
    "MaxPayloadBytes": 1048576,
    "UpstreamTimeoutSeconds": 1,
    # Two event loops, each on its own SO_REUSEPORT listener: everything
    # below runs with connections spread over both.
    "HttpThreads": 2,
    "ProductionVariants": [
        {"VariantName": "A", "InitialVariantWeight": 3, "ModelUrl": f"http://127.0.0.1:{a.server_port}"},
        {"VariantName": "B", "InitialVariantWeight": 1, "ModelUrl": f"http://127.0.0.1:{b.server_port}"},
        {"VariantName": "C", "InitialVariantWeight": 0, "ModelUrl": f"http://127.0.0.1:{free_port()}"},
    ],
    "DataCaptureConfig": {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"file://{dest}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
    },
    "Engine": {"SpoolDir": os.path.join(work, "spool"), "SegmentMaxAgeSeconds": 1},
}
cfg_path = os.path.join(work, "endpoint.json")
with open(cfg_path, "w") as f:
    json.dump(config, f)

# The access log as JSON lines, into a file (a pipe nobody reads could fill up).
log_path = os.path.join(work, "endpoint.log")
log_file = open(log_path, "w")
proc = subprocess.Popen([capline_bin, "endpoint", "--config", cfg_path], stdout=subprocess.PIPE, text=True,
                        stderr=log_file,
                        env=dict(os.environ, CAPLINE_LOG="warn,capline::access=info", CAPLINE_LOG_FORMAT="json"))


def stop_capline_on_failure(kind, value, tb):
    proc.kill()
    sys.__excepthook__(kind, value, tb)


sys.excepthook = stop_capline_on_failure
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        assert time.time() < deadline, "capline endpoint did not start"
        assert proc.poll() is None, "capline endpoint exited"
        time.sleep(0.05)
# The listeners accept (into the backlog) before their threads have run and
# named themselves, so the names may take a moment to appear.
deadline = time.time() + 10
while True:
    threads = sorted(open(f"/proc/{proc.pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{proc.pid}/task"))
    serving = [t for t in threads if t.startswith("capline-http")]
    if serving == ["capline-http-0", "capline-http-1"] or time.time() > deadline:
        break
    time.sleep(0.05)
assert serving == ["capline-http-0", "capline-http-1"], threads
print("HttpThreads 2: two serving threads, capline-http-0 and capline-http-1")
# A second endpoint on the same port is refused (SO_REUSEPORT would
# otherwise let it take half of this one's connections).
twin = dict(config, AdminListen=f"127.0.0.1:{free_port()}",
            Engine=dict(config["Engine"], SpoolDir=os.path.join(work, "twin-spool")))
twin_path = os.path.join(work, "twin.json")
with open(twin_path, "w") as f:
    json.dump(twin, f)
twin_run = subprocess.run([capline_bin, "endpoint", "--config", twin_path], capture_output=True, text=True, timeout=30)
assert twin_run.returncode != 0 and f"listen on 127.0.0.1:{port}" in twin_run.stderr, (twin_run.returncode, twin_run.stderr)
print("a second endpoint on the same port (HttpThreads 2 both): refused,", twin_run.stderr.strip().splitlines()[-1])

rt = boto3.client(
    "sagemaker-runtime",
    endpoint_url=f"http://127.0.0.1:{port}",
    region_name="us-east-1",
    aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="secret",
)
expected = {"A": [], "B": []}  # (inference id or None, request body) per success

# 1. CSV without InferenceId: the split by weight (3:1).
n = 400
for i in range(n):
    body = f"{i},0.5,1,0,3\n".encode()
    r = rt.invoke_endpoint(EndpointName="churn", Body=body, ContentType="text/csv", Accept="text/csv")
    v = r["InvokedProductionVariant"]
    out = r["Body"].read().decode()
    assert out == f"{v},{len(body)}", (v, out)
    assert r["ContentType"] == "text/csv"
    expected[v].append((None, body))
na = len(expected["A"])
sd = (n * 0.75 * 0.25) ** 0.5
assert abs(na - 0.75 * n) <= 5 * sd, f"split A {na} of {n}"
print(f"split: A {na}, B {n - na} of {n} (expected 300 +- {5 * sd:.0f})")

# 1b. Runtime control through `capline ctl`: weights and sampling, while
# traffic flows (no request may fail).
def ctl(*args, token="s3cret"):
    cmd = [capline_bin, "ctl", "--admin", f"127.0.0.1:{admin_port}"]
    if token:
        cmd += ["--token", token]
    return subprocess.run(cmd + list(args), capture_output=True, text=True)


denied = ctl("status", token=None)
assert denied.returncode != 0 and "401" in denied.stderr, denied
status = json.loads(ctl("status").stdout)
assert [(v["name"], v["weight"]) for v in status] == [("A", 3.0), ("B", 1.0), ("C", 0.0)], status
errors = []
flowing = True


def traffic():
    while flowing:
        try:
            r = rt.invoke_endpoint(EndpointName="churn", Body=b"7,7\n", ContentType="text/csv")
            expected[r["InvokedProductionVariant"]].append((None, b"7,7\n"))
            r["Body"].read()
        except Exception as e:  # noqa: BLE001 - any failure fails the test
            errors.append(e)


t = threading.Thread(target=traffic)
t.start()
for w in ["0", "3", "0.5", "0", "3"]:
    assert ctl("set", "A", "--weight", w).returncode == 0
    time.sleep(0.05)
flowing = False
t.join()
assert not errors, errors[:3]
assert ctl("set", "A", "--weight", "0").returncode == 0
for i in range(30):
    r = rt.invoke_endpoint(EndpointName="churn", Body=b"8,8\n", ContentType="text/csv")
    assert r["InvokedProductionVariant"] == "B", "weight 0 takes A out of rotation"
    expected["B"].append((None, b"8,8\n"))
assert ctl("set", "A", "--weight", "3").returncode == 0
# Sampling 0 on B: answered, not captured.
assert ctl("set", "B", "--sampling", "0").returncode == 0
for i in range(10):
    rt.invoke_endpoint(EndpointName="churn", Body=b"6,6\n", ContentType="text/csv", TargetVariant="B")
assert ctl("set", "B", "--sampling", "100").returncode == 0
bad = ctl("set", "B", "--sampling", "150")
assert bad.returncode != 0 and "sampling_percentage" in bad.stdout, bad
metrics = ctl("metrics").stdout
b_ok = int([l for l in metrics.splitlines()
            if l.startswith('capline_endpoint_requests_total{variant="B",code="2xx"}')][0].split()[-1])
b_sampled_out = int([l for l in metrics.splitlines() if l.startswith('capline_sampled_out_total{variant="B"}')][0].split()[-1])
assert b_ok == len(expected["B"]) + 10, (b_ok, len(expected["B"]))
assert b_sampled_out == 10, b_sampled_out
assert 'capline_endpoint_request_duration_seconds_bucket{variant="A",le="+Inf"}' in metrics
print(f"ctl: weights and sampling changed under traffic with no failed request; metrics B 2xx {b_ok}")

# 2. JSON with InferenceId and custom attributes, to the target variant B.
for i in range(20):
    body = json.dumps({"instances": [[i, 1.5, "x\"y"]]}).encode()
    r = rt.invoke_endpoint(EndpointName="churn", Body=body, ContentType="application/json",
                           Accept="application/json", InferenceId=f"id-{i}", TargetVariant="B",
                           CustomAttributes="c=1")
    assert r["InvokedProductionVariant"] == "B"
    assert json.loads(r["Body"].read()) == {"variant": "B", "n": len(body)}
    assert r["CustomAttributes"] == "c=1;seen-by=B", r.get("CustomAttributes")
    expected["B"].append((f"id-{i}", body))

# 3. Binary bodies to A.
for i in range(10):
    body = bytes([i, 0, 255, 128]) * 100
    r = rt.invoke_endpoint(EndpointName="churn", Body=body, ContentType="application/octet-stream",
                           TargetVariant="A", InferenceId=f"bin-{i}")
    assert r["Body"].read() == bytes(reversed(body))
    expected["A"].append((f"bin-{i}", body))

# 4. Failures: none is captured.
try:
    rt.invoke_endpoint(EndpointName="churn", Body=b"fail", ContentType="text/csv", TargetVariant="A")
    raise AssertionError("a model 500 must be a ModelError")
except rt.exceptions.ModelError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert e.response["OriginalStatusCode"] == 500, e.response
    assert e.response["OriginalMessage"] == "model exploded", e.response
try:
    rt.invoke_endpoint(EndpointName="churn", Body=b"x" * (1048576 + 1), ContentType="text/csv")
    raise AssertionError("an oversized body must be refused")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 413, e.response
try:
    rt.invoke_endpoint(EndpointName="churn", Body=b"1", ContentType="text/csv", TargetVariant="Z")
    raise AssertionError("an unknown target variant must be refused")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "ValidationError", e.response
try:
    rt.invoke_endpoint(EndpointName="churn", Body=b"1", ContentType="text/csv", TargetVariant="C")
    raise AssertionError("a model that is down must be an error")
except rt.exceptions.ModelError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 424
try:
    rt.invoke_endpoint(EndpointName="other", Body=b"1", ContentType="text/csv")
    raise AssertionError("another endpoint name must be refused")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "ValidationError", e.response
# A slow model: the upstream timeout (1 s) gives a ModelError, not a hang.
started = time.time()
try:
    rt.invoke_endpoint(EndpointName="churn", Body=b"slow", ContentType="text/csv", TargetVariant="A")
    raise AssertionError("a model slower than UpstreamTimeoutSeconds must be a ModelError")
except rt.exceptions.ModelError as e:
    assert "timed out" in e.response["Error"]["Message"], e.response
assert time.time() - started < 1.9, "answered at the timeout, not when the model finished"
# A client that disconnects mid-request (10 of 1000 body bytes sent).
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /endpoints/churn/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
              b"Content-Length: 1000\r\n\r\n0123456789")
    s.close()
# The endpoint still serves after all that.
r = rt.invoke_endpoint(EndpointName="churn", Body=b"9,9\n", ContentType="text/csv", TargetVariant="B")
expected["B"].append((None, b"9,9\n"))

# 4b. SigV4: every call above was verified against boto3's own signature.
# Unsigned, wrongly signed and tampered requests are refused (403), not captured.
unsigned = urllib.request.Request(f"http://127.0.0.1:{port}/endpoints/churn/invocations", data=b"1,2\n",
                                  headers={"Content-Type": "text/csv"})
try:
    urllib.request.urlopen(unsigned)
    raise AssertionError("an unsigned request must be refused")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
wrong = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-the-secret")
try:
    wrong.invoke_endpoint(EndpointName="churn", Body=b"1,2\n", ContentType="text/csv")
    raise AssertionError("a wrong secret must be refused")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

signed = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/endpoints/churn/invocations",
                    data=b"1,2\n", headers={"Content-Type": "text/csv"})
SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "sagemaker", "us-east-1").add_auth(signed)
prepared = signed.prepare()
ok = urllib.request.Request(prepared.url, data=b"1,2\n", headers=dict(prepared.headers), method="POST")
with urllib.request.urlopen(ok) as resp:  # the untouched signed request passes
    expected[resp.headers["X-Amzn-Invoked-Production-Variant"]].append((None, b"1,2\n"))
tampered = urllib.request.Request(prepared.url, data=b"1,3\n", headers=dict(prepared.headers), method="POST")
try:
    urllib.request.urlopen(tampered)
    raise AssertionError("a tampered body must be refused")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
    assert "does not match" in e.read().decode()
print("sigv4: boto3 signatures verified; unsigned, wrong-secret and tampered requests refused")

# Model A keeps connections alive and closes them after 0.3 s idle: a request
# after a pause reaches it on a new connection, and is sent exactly once.
for body in (b"idle,1\n", b"idle,2\n", b"idle,3\n"):
    r = rt.invoke_endpoint(EndpointName="churn", Body=body, ContentType="text/csv", TargetVariant="A")
    assert r["Body"].read() == f"A,{len(body)}".encode()
    expected["A"].append((None, body))
    time.sleep(0.6)
assert [seen.get(b) for b in (b"idle,1\n", b"idle,2\n", b"idle,3\n")] == [1, 1, 1], seen
print("keep-alive: requests after the model closed idle connections succeed, each sent once")

# 5. /ping says the endpoint is unhealthy (C is down), and names no variant.
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/ping")
    raise AssertionError("ping must fail while a model is down")
except urllib.error.HTTPError as e:
    assert e.code == 503
    assert json.loads(e.read()) == {"status": "Unhealthy"}

# 6. Sidecar form: plain POST /invocations goes to the first variant, and
# with AccessKeys set it must be signed like every route to a model.
req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=b"5,5\n",
                             headers={"Content-Type": "text/csv"})
try:
    urllib.request.urlopen(req)
    raise AssertionError("an unsigned sidecar request must be refused")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
sidecar = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/invocations",
                     data=b"5,5\n", headers={"Content-Type": "text/csv"})
SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "sagemaker", "us-east-1").add_auth(sidecar)
sidecar = sidecar.prepare()
req = urllib.request.Request(sidecar.url, data=b"5,5\n", headers=dict(sidecar.headers), method="POST")
with urllib.request.urlopen(req) as resp:
    assert resp.read() == b"A,4"
expected["A"].append((None, b"5,5\n"))

# Stop (SIGTERM) while a request is in flight: it completes and is captured;
# then the engines write and deliver everything.
drained = {}


def in_flight():
    drained["answer"] = rt.invoke_endpoint(
        EndpointName="churn", Body=b"drain", ContentType="text/csv", TargetVariant="B")["Body"].read()


answered = {}  # 2xx answers per variant so far, from /metrics
for line in ctl("metrics").stdout.splitlines():
    for v in ("A", "B"):
        if line.startswith(f'capline_endpoint_requests_total{{variant="{v}",code="2xx"}}'):
            answered[v] = int(line.split()[-1])
answered["B"] += 1  # the request in flight at SIGTERM
t = threading.Thread(target=in_flight)
t.start()
time.sleep(0.2)
proc.send_signal(signal.SIGTERM)
t.join()
assert drained.get("answer") == b"B,5", drained
expected["B"].append((None, b"drain"))
out, _ = proc.communicate(timeout=60)
assert proc.returncode == 0, out
print("SIGTERM: the in-flight request finished and was captured")

for variant, want in expected.items():
    folder = os.path.join(dest, "churn", variant)
    check = subprocess.run([capline_bin, "cat", "--validate", folder], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    records = []
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name)) as f:
                records += [json.loads(line) for line in f]
    assert len(records) == len(want), (variant, len(records), len(want))
    got = set()
    for rec in records:
        inp = rec["captureData"]["endpointInput"]
        data = base64.b64decode(inp["data"]) if inp["encoding"] == "BASE64" else inp["data"].encode()
        got.add((rec["eventMetadata"].get("inferenceId"), data))
    assert got == set(want), (variant, sorted(got - set(want))[:3], sorted(set(want) - got)[:3])
    print(f"variant {variant}: {len(records)} records captured, matching the successful invocations")
assert not os.path.exists(os.path.join(dest, "churn", "C")) or not any(
    files for _, _, files in os.walk(os.path.join(dest, "churn", "C"))), "nothing captured for C"
# The access log: one JSON event per request, successes per variant as
# captured, refusals with their error type; never a body or a credential.
log_file.close()
with open(log_path) as f:
    log_text = f.read()
events = [json.loads(line) for line in log_text.splitlines() if line.strip()]
access = [e["fields"] for e in events if e["target"] == "capline::access"]
for variant, n in answered.items():
    ok = [a for a in access if a["status"] == 200 and a["variant"] == variant]
    assert len(ok) == n, (variant, len(ok), n)
assert any(a["status"] == 403 and a["error"] == "InvalidSignatureException" for a in access)
assert any(a["status"] == 424 and a["error"] == "ModelError" for a in access)
assert any(a["status"] == 413 for a in access)
for secret in ("secret", "AKIDEXAMPLE", "Signature=", "idle,1"):
    assert secret not in log_text, f"{secret!r} appears in the log"
print(f"access log: {len(access)} JSON events, one per request; no body or credential in the log")
print("endpoint_test: ok")
