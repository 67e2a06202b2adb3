"""`capline replay` and `capline cat` against S3 (moto), with real processes:

1. capline endpoint captures 120 invocations (CSV, JSON, binary; boto3's
   sagemaker-runtime client, signed) of model v1 into moto.
2. `capline cat --validate s3://...` reads them back from moto.
3. Model v2 changes exactly the answers of 13 known requests, and adds a
   tiny numeric change (1e-9) to 20 others. `capline replay s3://...` to
   v2's /invocations finds exactly the 13 + 20 changed answers byte for
   byte, and exactly the 13 with --tolerance 1e-6; its JSON report names
   exactly those inference ids.
4. Through a capline endpoint in front of v2 (SigV4, as boto3 signs): the
   same 13 with a tolerance; --no-sign is refused there (403, counted).
   The same over https (a TLS terminator with a private CA in front of it,
   as the real runtime API is https): trusted through --ca-bundle or
   AWS_CA_BUNDLE; without the CA every request fails on the certificate,
   counted; a missing bundle is an error naming the flag.
5. --limit, a time window, --rate, an Output-only capture (counted and
   skipped with a message), progress lines when stderr is not a terminal.

Usage: python replay_test.py CAPLINE_BIN S3_ENDPOINT_URL
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import boto3

from container import ContainerModel, free_port, serve, start_endpoint
from tls import Terminator, make_ca_and_cert

capline_bin, s3_url = sys.argv[1], sys.argv[2]
os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "secret")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
KEY_ID, SECRET = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]

CHANGED = {i for i in range(120) if i % 9 == 4}           # 13 answers change
NOISY = {i for i in range(120) if i % 6 == 1} - CHANGED    # tiny numeric change


def answer(version, body, ctype):
    """v1 and v2 of the model; the request's number decides what v2 changes."""
    if ctype == "application/json":
        req = json.loads(body)
        i = req["i"]
        score = i / 7
        if version == 2 and i in CHANGED:
            score += 0.5
        if version == 2 and i in NOISY:
            score += 1e-9
        return json.dumps({"i": i, "score": score, "label": "yes" if score > 5 else "no"}).encode(), "application/json"
    if ctype == "text/csv":
        i = int(body.split(b",")[0])
        score = i / 3
        if version == 2 and i in CHANGED:
            score = -score - 1
        if version == 2 and i in NOISY:
            score += 1e-9
        return f"{score!r},{i}\n".encode(), "text/csv"
    i = body[0]
    out = bytes(reversed(body))
    if version == 2 and i in CHANGED:
        out = out + b"\x00"
    return out, "application/octet-stream"


def model(version):
    class Model(ContainerModel):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            out, otype = answer(version, body, self.headers.get("Content-Type", ""))
            self.send_response(200)
            self.send_header("Content-Type", otype)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return serve(Model)


work = tempfile.mkdtemp()
s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
bucket = f"capline-replay-{os.getpid()}-{int(time.time())}"
s3.create_bucket(Bucket=bucket)


def endpoint(name, model_port, prefix, modes=("Input", "Output")):
    port = free_port()
    config = {
        "EndpointName": name,
        "Listen": f"127.0.0.1:{port}",
        "AdminListen": f"127.0.0.1:{free_port()}",
        "AccessKeys": [{"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET}],
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": f"http://127.0.0.1:{model_port}"}],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{bucket}/{prefix}",
            "CaptureOptions": [{"CaptureMode": m} for m in modes],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
        },
        "Engine": {
            "SpoolDir": os.path.join(work, f"spool-{name}-{prefix}"),
            "SegmentMaxAgeSeconds": 1,
            "S3": {"EndpointUrl": s3_url, "ForcePathStyle": True, "Region": "us-east-1"},
        },
    }
    return start_endpoint(capline_bin, config, work, f"{name}-{prefix}"), port


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def request(i):
    kind = i % 3
    if kind == 0:
        return f"{i},0.5,{i * 2}\n".encode(), "text/csv"
    if kind == 1:
        return json.dumps({"i": i, "features": [i, i + 1]}).encode(), "application/json"
    return bytes([i]) + os.urandom(300), "application/x-npy"


def capline(*args, check=True):
    r = subprocess.run([capline_bin, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode in (0, 1), f"capline {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


# 1. Capture v1's answers through capline endpoint.
v1, v2 = model(1), model(2)
proc, port = endpoint("churn", v1.server_port, "capture")
runtime = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
for i in range(120):
    body, ctype = request(i)
    r = runtime.invoke_endpoint(EndpointName="churn", Body=body, ContentType=ctype, InferenceId=f"req-{i}")
    assert r["Body"].read() == answer(1, body, ctype)[0]
stop(proc)
source = f"s3://{bucket}/capture/churn/AllTraffic"

# 2. cat reads S3.
r = capline("cat", "--validate", "--s3-endpoint-url", s3_url, source)
assert r.returncode == 0 and "checked 120 records" in r.stderr and " 0 violations" in r.stderr, r.stderr
r = capline("cat", "--s3-endpoint-url", s3_url, source)
assert sorted(json.loads(l)["eventMetadata"]["inferenceId"] for l in r.stdout.splitlines()) == \
    sorted(f"req-{i}" for i in range(120))
print(f"cat: 120 records read back from {source} and valid")


def replay(*args, report=True):
    path = os.path.join(work, f"report-{time.time_ns()}.json")
    r = capline("replay", "--s3-endpoint-url", s3_url, "--examples", "1000",
                *(["--report", path] if report else []), *args)
    if report:
        assert os.stat(path).st_mode & 0o777 == 0o600, "the report quotes captured bodies: 0600"
    return r, (json.load(open(path)) if report else None)


def ids(rep):
    return {int(m["inferenceId"].split("-")[1]) for m in rep["mismatches"]}


# 3. Replay against v2's container: exactly the changed answers.
to_v2 = f"http://127.0.0.1:{v2.server_port}/invocations"
r, rep = replay(source, "--to", to_v2, "--concurrency", "8")
assert r.returncode == 1, r.stdout
assert rep["read"]["records"] == 120 and rep["read"]["sent"] == 120, rep["read"]
noisy_seen = {i for i in NOISY if i % 3 != 2}  # binary answers have no numbers
assert ids(rep) == CHANGED | noisy_seen, sorted(ids(rep) ^ (CHANGED | noisy_seen))
assert rep["answers"]["exact"] == 120 - len(CHANGED | noisy_seen) and rep["answers"]["errors"] == 0, rep["answers"]
assert "mismatched" in r.stdout and "latency ms" in r.stdout, r.stdout
assert "replay: files" in r.stderr, "plain progress lines when stderr is not a terminal"
r, rep = replay(source, "--to", to_v2, "--tolerance", "1e-6", "--concurrency", "8")
assert ids(rep) == CHANGED, sorted(ids(rep) ^ CHANGED)
print("the report of `capline replay --tolerance 1e-6` (mismatch examples cut to 2):")
print(r.stdout.split("mismatches (first")[0] + "mismatches (first" +
      "\n".join(r.stdout.split("mismatches (first")[1].splitlines()[:7]))
assert rep["answers"]["withinTolerance"] == len(noisy_seen), rep["answers"]
assert rep["latencyMs"]["p50"] > 0 and rep["latencyMs"]["p99"] >= rep["latencyMs"]["p50"]
print(f"replay to a container: {len(CHANGED | noisy_seen)} changed answers found byte for byte, "
      f"{len(CHANGED)} beyond a 1e-6 tolerance, exactly the changed ones")

# On a terminal (a pty from script(1)): a bar redrawn in place.
cmd = " ".join([capline_bin, "replay", "--s3-endpoint-url", s3_url, source, "--to", to_v2, "--rate", "100", "--limit", "40"])
tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120)
assert b"\r\x1b[2K[" in tty.stdout and b"#" in tty.stdout and b"replay: files" not in tty.stdout, tty.stdout[-500:]
print("progress: a bar redrawn in place on a terminal, plain lines otherwise")

# Against v1 itself: everything matches, exit 0.
r, rep = replay(source, "--to", f"http://127.0.0.1:{v1.server_port}")
assert r.returncode == 0 and rep["answers"]["exact"] == 120, (r.stdout, r.stderr)

# 4. Through capline endpoint in front of v2, signed as boto3 signs.
proc2, port2 = endpoint("candidate", v2.server_port, "candidate")
r, rep = replay(source, "--to", f"http://127.0.0.1:{port2}/endpoints/candidate", "--tolerance", "1e-6")
assert rep["answers"]["errors"] == 0, (rep["answers"], rep["errors"][:3])
assert ids(rep) == CHANGED, sorted(ids(rep) ^ CHANGED)
assert "SigV4-signed" in rep["target"], rep["target"]
r, rep = replay(source, "--to", f"http://127.0.0.1:{port2}/endpoints/candidate/invocations", "--no-sign",
                "--limit", "5")
assert rep["answers"]["errorsByKind"] == {"HTTP 403": 5}, rep["answers"]
print("replay through capline endpoint: SigV4-signed, the same changed answers; unsigned refused (403), counted")

# The same over https, as the real runtime API is (`https://runtime.sagemaker.REGION.amazonaws.com`).
ca, cert, key = make_ca_and_cert(work)
tls = Terminator(cert, key, port2)
to_tls = f"https://localhost:{tls.port}/endpoints/candidate"
r, rep = replay(source, "--to", to_tls, "--tolerance", "1e-6", "--ca-bundle", ca)
assert rep["answers"]["errors"] == 0, (rep["answers"], rep["errors"][:3])
assert ids(rep) == CHANGED and "SigV4-signed" in rep["target"], (sorted(ids(rep) ^ CHANGED), rep["target"])
assert tls.handshakes >= 1, tls.handshakes
os.environ["AWS_CA_BUNDLE"] = ca
r, rep = replay(source, "--to", to_tls, "--limit", "5", "--tolerance", "1e-6")
assert rep["answers"]["errors"] == 0 and rep["read"]["sent"] == 5, rep["answers"]
del os.environ["AWS_CA_BUNDLE"]
# Without the CA the system's roots do not trust the certificate: no request reaches the model.
refused_before = tls.refused
r, rep = replay(source, "--to", to_tls, "--limit", "5")
assert r.returncode == 1 and rep["answers"]["errors"] == 5, (r.returncode, rep["answers"])
assert all("certificate" in e["why"].lower() for e in rep["errors"]), rep["errors"][:2]
assert tls.refused > refused_before, (tls.refused, refused_before)
r = capline("replay", source, "--to", to_tls, "--ca-bundle", os.path.join(work, "missing.pem"), check=False)
assert r.returncode == 2 and "--ca-bundle" in r.stderr, (r.returncode, r.stderr)
not_pem = os.path.join(work, "not-a-bundle.pem")
with open(not_pem, "w") as f:
    f.write("no certificate here\n")
r = capline("replay", source, "--to", to_tls, "--ca-bundle", not_pem, check=False)
assert r.returncode == 2 and "--ca-bundle" in r.stderr and "no usable PEM certificate" in r.stderr, r.stderr
tls.close()
stop(proc2)
# S3 over https with a private CA: the AWS SDK trusts SSL_CERT_FILE (it does not read AWS_CA_BUNDLE).
s3_tls = Terminator(cert, key, int(s3_url.rsplit(":", 1)[1]))
s3_https = f"https://localhost:{s3_tls.port}"
r = capline("cat", "--s3-endpoint-url", s3_https, source, check=False)
assert r.returncode == 2 and "UnknownIssuer" in r.stderr, (r.returncode, r.stderr)
os.environ["SSL_CERT_FILE"] = ca
r = capline("cat", "--s3-endpoint-url", s3_https, source)
del os.environ["SSL_CERT_FILE"]
assert len(r.stdout.splitlines()) == 120, r.stderr
s3_tls.close()
print("replay over https: trusted through --ca-bundle or AWS_CA_BUNDLE, the same changed answers; "
      "an untrusted certificate fails every request, counted; a missing or empty bundle names the flag; "
      "S3 over https trusts SSL_CERT_FILE")

# 5. Selection and pacing.
r, rep = replay(source, "--to", to_v2, "--limit", "10")
assert rep["read"]["sent"] == 10 and rep["read"]["skippedOverLimit"] == 110, rep["read"]
r, rep = replay(source, "--to", to_v2, "--since", "2999-01-01T00:00:00Z")
assert rep["read"]["sent"] == 0 and rep["read"]["skippedOutsideWindow"] == 120, rep["read"]
r, rep = replay(source, "--to", to_v2, "--since", started, "--until", "2999-01-01T00:00:00.000Z")
assert rep["read"]["sent"] == 120, rep["read"]
r = capline("replay", source, "--to", to_v2, "--since", "yesterday", check=False)
assert r.returncode == 2 and "--since" in r.stderr, r.stderr
r, rep = replay(source, "--to", to_v2, "--rate", "40", "--limit", "41")
assert rep["elapsedSeconds"] >= 0.95, rep["elapsedSeconds"]  # 41 requests 25 ms apart: >= 1 s
print(f"--limit, --since/--until and --rate 40 (41 requests in {rep['elapsedSeconds']:.2f} s) select and pace")

# Output-only capture: nothing to send; counted, with a message.
proc3, port3 = endpoint("outonly", v1.server_port, "outonly", modes=("Output",))
rt3 = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port3}", region_name="us-east-1")
for i in range(6):
    body, ctype = request(i)
    rt3.invoke_endpoint(EndpointName="outonly", Body=body, ContentType=ctype)
stop(proc3)
r, rep = replay(f"s3://{bucket}/outonly", "--to", to_v2)
assert rep["read"]["skippedOutputOnly"] == 6 and rep["read"]["sent"] == 0, rep["read"]
assert "without their input" in r.stderr, r.stderr
print("an Output-only capture: 6 records counted and skipped, with a message")
