"""Shadow variants in capline endpoint, with real processes: boto3's
sagemaker-runtime client in front; a production model; and four shadows: a
good one (different answers), a slow one (1 s per request), a dead one (no
server) and one that fails every other request.

- Every client answer is production's, unchanged, from the production
  variant, and no request waits for a shadow: the slowest of 200 answers is
  far below the slow shadow's 1 s.
- The slow shadow never has more than MaxShadowInFlight (4) requests in
  flight; the others are skipped and counted: mirrored + skipped = requests.
- The dead shadow's requests all fail, counted; the failing one's 500s are
  counted and not captured.
- The admin API shows each shadow's counts and changes the mirrored share at
  run time (0 %: none mirrored); /metrics has the shadow series.
- Shadow answers are captured under the shadow's own folder, with the
  client's request and inference id.
- Streamed routes mirror too: an InvokeEndpointWithResponseStream (boto3)
  and a passthrough `POST` (with its path, query and headers) reach a
  streaming shadow, whose streamed answer is captured whole; a passthrough
  `GET` is not mirrored; a shadow that stalls mid-stream is counted as
  failed while the client's stream is production's, on time.

Usage: python shadow_test.py CAPLINE_BIN
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

from container import ContainerModel, free_port, serve, start_endpoint

capline_bin = sys.argv[1]


def data_capture(dest):
    """Every request and answer captured, CSV as text, into file://DEST."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"file://{dest}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    }


def model(kind):
    calls = {"n": 0}

    class Model(ContainerModel):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            calls["n"] += 1
            status, out = 200, f"{kind}:{body.decode()}".encode()
            if kind == "slow":
                time.sleep(1)
            if kind == "failing" and calls["n"] % 2 == 0:
                status = 500
            self.send_response(status)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            try:
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return serve(Model)


work = tempfile.mkdtemp()
prod, good, slow, failing = model("prod"), model("good"), model("slow"), model("failing")
port, admin = free_port(), free_port()
dest = os.path.join(work, "capture")
config = {
    "EndpointName": "churn",
    "Listen": f"127.0.0.1:{port}",
    "AdminListen": f"127.0.0.1:{admin}",
    "UpstreamTimeoutSeconds": 5,
    "MaxShadowInFlight": 4,
    "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": f"http://127.0.0.1:{prod.server_port}"}],
    "ShadowProductionVariants": [
        {"VariantName": "Shadow-good", "ModelUrl": f"http://127.0.0.1:{good.server_port}"},
        {"VariantName": "Shadow-slow", "ModelUrl": f"http://127.0.0.1:{slow.server_port}"},
        {"VariantName": "Shadow-dead", "ModelUrl": f"http://127.0.0.1:{free_port()}"},
        {"VariantName": "Shadow-failing", "SamplingPercentage": 100,
         "ModelUrl": f"http://127.0.0.1:{failing.server_port}"},
    ],
    "DataCaptureConfig": data_capture(dest),
    "Engine": {"SpoolDir": os.path.join(work, "spool"), "SegmentMaxAgeSeconds": 1},
}
proc = start_endpoint(capline_bin, config, work)


def admin_call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{admin}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def shadows():
    return {s["name"]: s for s in json.loads(admin_call("GET", "/shadows"))}


runtime = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")


def invoke(i):
    started = time.perf_counter()
    r = runtime.invoke_endpoint(EndpointName="churn", Body=f"{i},1".encode(), ContentType="text/csv",
                                InferenceId=f"req-{i}")
    took = time.perf_counter() - started
    assert r["Body"].read() == f"prod:{i},1".encode(), i
    assert r["InvokedProductionVariant"] == "AllTraffic", r
    return took


N = 200
slowest = max(invoke(i) for i in range(N))
# No client waited for a shadow: the slow one takes 1 s per request.
assert slowest < 0.5, f"a client waited {slowest:.2f} s"
in_flight_max = 0
deadline = time.time() + 15
while True:
    s = shadows()
    in_flight_max = max(in_flight_max, s["Shadow-slow"]["in_flight"])
    settled = all(x["in_flight"] == 0 for x in s.values())
    if settled or time.time() > deadline:
        break
    time.sleep(0.2)
assert settled, s
slow_s, dead_s, good_s, fail_s = (s[n] for n in ("Shadow-slow", "Shadow-dead", "Shadow-good", "Shadow-failing"))
assert slow_s["mirrored"] + slow_s["skipped_busy"] == N, slow_s
assert 4 <= slow_s["mirrored"] < N / 2 and slow_s["skipped_busy"] > 0, slow_s
assert in_flight_max <= 4, in_flight_max
assert dead_s["failed"] == dead_s["mirrored"] and dead_s["mirrored"] + dead_s["skipped_busy"] == N, dead_s
assert good_s["mirrored"] + good_s["skipped_busy"] == N and good_s["mirrored"] > N / 2, good_s
assert good_s["responses"]["2xx"] == good_s["mirrored"] and good_s["failed"] == 0, good_s
assert fail_s["responses"]["5xx"] >= 1 and fail_s["responses"]["2xx"] + fail_s["responses"]["5xx"] == fail_s["mirrored"], fail_s
print(f"shadows: {N} answers all production's, slowest {slowest * 1000:.0f} ms (the slow shadow takes 1 s); "
      f"slow shadow mirrored {slow_s['mirrored']} (at most {in_flight_max} in flight, bound 4), skipped "
      f"{slow_s['skipped_busy']}; dead shadow failed {dead_s['failed']}; failing shadow 5xx {fail_s['responses']['5xx']}")

# The mirrored share at run time.
admin_call("POST", "/shadows/Shadow-good", {"mirror_percentage": 0})
before = shadows()["Shadow-good"]["mirrored"]
for i in range(N, N + 50):
    invoke(i)
assert shadows()["Shadow-good"]["mirrored"] == before, "0 %: nothing mirrored"
admin_call("POST", "/shadows/Shadow-good", {"mirror_percentage": 50})
for i in range(N + 50, N + 250):
    invoke(i)
half = shadows()["Shadow-good"]["mirrored"] - before
assert 50 < half < 150, half
try:
    admin_call("POST", "/shadows/Shadow-good", {"mirror_percentage": 101})
    raise AssertionError("a share over 100 must be refused")
except urllib.error.HTTPError as e:
    assert e.code == 400 and "mirror_percentage" in e.read().decode()
metrics = admin_call("GET", "/metrics")
for line in ['capline_shadow_mirrored_total{shadow="Shadow-good"}', 'capline_shadow_skipped_total{shadow="Shadow-slow"}',
             'capline_shadow_failed_total{shadow="Shadow-dead"}', 'capline_shadow_responses_total{shadow="Shadow-failing",code="5xx"}',
             'capline_shadow_response_duration_seconds_bucket{shadow="Shadow-slow",le="+Inf"}',
             'capline_shadow_mirror_ratio{shadow="Shadow-good"} 0.5', 'capline_kept_total{variant="Shadow-good"}']:
    assert line in metrics, line
print(f"admin API: mirrored share 0 % -> none of 50 mirrored; 50 % -> {half} of 200; /metrics has the shadow series")

good_2xx = shadows()["Shadow-good"]["responses"]["2xx"]
fail_2xx = shadows()["Shadow-failing"]["responses"]["2xx"]
proc.send_signal(signal.SIGTERM)
out, _ = proc.communicate(timeout=60)
assert proc.returncode == 0, out


def records(variant):
    out = []
    root = os.path.join(dest, "churn", variant)
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".jsonl"):
                out += [json.loads(l) for l in open(os.path.join(d, f))]
    return out


assert len(records("AllTraffic")) == N + 250
good_recs = records("Shadow-good")
assert len(good_recs) == good_2xx, (len(good_recs), good_2xx)
for r in good_recs:
    iid = r["eventMetadata"]["inferenceId"]
    i = int(iid.split("-")[1])
    cd = r["captureData"]
    assert cd["endpointInput"]["data"] == f"{i},1", r
    assert cd["endpointOutput"]["data"] == f"good:{i},1", r
assert len(records("Shadow-failing")) == fail_2xx, "the failing shadow's 500s are not captured"
assert records("Shadow-dead") == []
print(f"capture: {len(good_recs)} shadow records under churn/Shadow-good/ with the client's request and "
      f"inference id; the failing shadow's 2xx only ({fail_2xx}); none for the dead one")
subprocess.run([capline_bin, "cat", "--validate", dest], check=True, capture_output=True)


# --- Streamed routes: InvokeEndpointWithResponseStream and a passthrough route ---
seen = {"shadow": [], "stall": 0}
PARTS = 4


def streaming(kind):
    class Model(ContainerModel):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if kind == "shadow":
                seen["shadow"].append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for n in range(PARTS):
                    if kind == "stall" and n == 1:
                        seen["stall"] += 1
                        time.sleep(4)  # past UpstreamTimeoutSeconds (2) between chunks
                    part = f"{kind}:{body.decode()}:{n};".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                    time.sleep(0.05)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return serve(Model)


s_prod, s_shadow, s_stall = streaming("prod"), streaming("shadow"), streaming("stall")
s_port, s_admin = free_port(), free_port()
s_dest = os.path.join(work, "capture-streams")
s_config = {
    "EndpointName": "llm",
    "Listen": f"127.0.0.1:{s_port}",
    "AdminListen": f"127.0.0.1:{s_admin}",
    "UpstreamTimeoutSeconds": 2,
    "PassthroughRoutes": ["/v1/completions"],
    "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": f"http://127.0.0.1:{s_prod.server_port}"}],
    "ShadowProductionVariants": [
        {"VariantName": "Shadow-stream", "SamplingPercentage": 100,
         "ModelUrl": f"http://127.0.0.1:{s_shadow.server_port}"},
        {"VariantName": "Shadow-stall", "SamplingPercentage": 100,
         "ModelUrl": f"http://127.0.0.1:{s_stall.server_port}"},
    ],
    "DataCaptureConfig": data_capture(s_dest),
    "Engine": {"SpoolDir": os.path.join(work, "spool-streams"), "SegmentMaxAgeSeconds": 1},
}
s_proc = start_endpoint(capline_bin, s_config, work, "streams")
s_runtime = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{s_port}", region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="x")


def whole(kind, body):
    return "".join(f"{kind}:{body}:{n};" for n in range(PARTS))


started = time.perf_counter()
r = s_runtime.invoke_endpoint_with_response_stream(EndpointName="llm", Body=b"s1", ContentType="text/csv",
                                                   InferenceId="stream-1")
got = b"".join(e["PayloadPart"]["Bytes"] for e in r["Body"] if "PayloadPart" in e)
took = time.perf_counter() - started
assert got == whole("prod", "s1").encode(), got
# The stalled shadow holds its copy for 2 s; the client's stream takes PARTS x 50 ms.
assert took < 1.5, f"the client's stream waited for a shadow: {took:.2f} s"

import requests  # noqa: E402  (the openai-style route needs raw headers)

r = requests.post(f"http://127.0.0.1:{s_port}/v1/completions?api-version=2", data=b"p1", timeout=10,
                  headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "pass-1",
                           "X-Request-Tag": "t1"}, stream=True)
assert b"".join(r.iter_content(chunk_size=None)) == whole("prod", "p1").encode()
r = requests.get(f"http://127.0.0.1:{s_port}/v1/completions", timeout=10)
assert r.status_code == 404, r.status_code  # the model's own answer to a read, passed on
deadline = time.time() + 15
while True:
    st = {x["name"]: x for x in json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{s_admin}/shadows", timeout=10).read())}
    if all(x["in_flight"] == 0 for x in st.values()) or time.time() > deadline:
        break
    time.sleep(0.2)
assert st["Shadow-stream"]["mirrored"] == 2 and st["Shadow-stream"]["responses"]["2xx"] == 2, st["Shadow-stream"]
assert st["Shadow-stall"]["mirrored"] == 2 and st["Shadow-stall"]["failed"] == 2, st["Shadow-stall"]
paths = [p for p, _, _ in seen["shadow"]]
assert paths == ["/invocations", "/v1/completions?api-version=2"], paths
_, pass_headers, pass_body = seen["shadow"][1]
assert pass_body == b"p1" and pass_headers.get("x-request-tag") == "t1", pass_headers
assert pass_headers.get("x-amzn-sagemaker-inference-id") == "pass-1", pass_headers
s_proc.send_signal(signal.SIGTERM)
out, _ = s_proc.communicate(timeout=60)
assert s_proc.returncode == 0, out


def stream_records(variant):
    out = []
    for d, _, files in os.walk(os.path.join(s_dest, "llm", variant)):
        out += [json.loads(l) for f in files if f.endswith(".jsonl") for l in open(os.path.join(d, f))]
    return {r["eventMetadata"]["inferenceId"]: r["captureData"] for r in out}


shadow_recs = stream_records("Shadow-stream")
assert set(shadow_recs) == {"stream-1", "pass-1"}, sorted(shadow_recs)
for iid, body in (("stream-1", "s1"), ("pass-1", "p1")):
    cd = shadow_recs[iid]
    assert cd["endpointInput"]["data"] == body, cd
    assert cd["endpointOutput"]["data"] == whole("shadow", body), cd
assert stream_records("Shadow-stall") == {}, "a stalled shadow stream is not captured"
assert set(stream_records("AllTraffic")) == {"stream-1", "pass-1"}
print(f"streamed routes: InvokeEndpointWithResponseStream and a passthrough POST mirrored "
      f"(path, query and headers kept; the GET not), each shadow stream captured whole; a stalled shadow "
      f"counted as failed while the client's stream took {took * 1000:.0f} ms")
