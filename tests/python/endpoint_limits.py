"""`capline endpoint` against careless and hostile clients, with real sockets.

Usage: python endpoint_limits.py CAPLINE_BIN

Two endpoints run: one without AccessKeys (for the limits) and one with them
(for authentication). Each point below is a real client against the running
process, and prints what it measured:

- memory: bodies sent as 1-byte chunks and then stalled; the process's RSS
  grows by less than the payload limit per connection, and the stall is cut
  off by the body timeout (408);
- a declared Content-Length over the limit: 413 at once, no `100 Continue`;
- slowloris: 200 connections sending headers a byte at a time, and 100 idle
  keep-alive connections, are closed by the header and idle timeouts while a
  well-behaved client is answered promptly and the process stays near idle;
  a request slower than the idle timeout is not cut;
- an exhausted file-descriptor table: accept errors back off (the process
  stays near idle) and, once the slow connections are gone, clients are
  answered again;
- the model's answer: a 900 KiB error body becomes a ModelError of a few KB, and
  an answer over MaxResponseBytes is refused, not captured;
- SageMaker's header constraints (inference id, content type, target
  variant) answer 400 ValidationError;
- with AccessKeys, unsigned requests to every model route, and to unknown
  endpoint or variant names, get 403; a signature for another region too;
  /ping names nothing; a /ping storm reaches each model once per cache period;
- the admin API: a wrong token of the right length, a non-JSON state change,
  a foreign Origin, weights summing to 0 or overflowing are refused.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from container import ContainerModel, free_port, serve

capline_bin = sys.argv[1]
pings = {"n": 0}


class Model(ContainerModel):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        pings["n"] += 1
        super().do_GET()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if body == b"slow":
            time.sleep(2.5)
        if body == b"big-error":
            out, status = b"x" * (900 * 1024), 500
        elif body == b"big-answer":
            out, status = b"y" * (2 * 1024 * 1024), 200
        else:
            out, status = b"0.5", 200
        self.send_response(status)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(out)))
        try:
            self.end_headers()
            self.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):
            pass  # capline stopped reading an answer over MaxResponseBytes


model = serve(Model)
work = tempfile.mkdtemp()
procs = []


def start(name, extra):
    port, admin = free_port(), free_port()
    config = {
        "EndpointName": "churn",
        "Listen": f"127.0.0.1:{port}",
        "AdminListen": f"127.0.0.1:{admin}",
        "AdminToken": "s3cret-token",
        "MaxPayloadBytes": 1048576,
        "MaxResponseBytes": 1048576,
        # Long enough to send 6 MB of 1-byte chunk framing on a loaded machine.
        "BodyTimeoutSeconds": 5,
        "HeaderTimeoutSeconds": 2,
        "IdleTimeoutSeconds": 1,
        "ProductionVariants": [
            {"VariantName": "A", "ModelUrl": f"http://127.0.0.1:{model.server_port}"},
            {"VariantName": "B", "InitialVariantWeight": 0, "ModelUrl": f"http://127.0.0.1:{model.server_port}"},
        ],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"file://{work}/{name}-capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        },
        "Engine": {"SpoolDir": f"{work}/{name}-spool"},
    }
    config.update(extra)
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proc = subprocess.Popen([capline_bin, "endpoint", "--config", path], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, f"{name}.log"), "w"))
    procs.append(proc)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, admin
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "capline endpoint did not start"
            time.sleep(0.05)


def stop_all(kind=None, value=None, tb=None):
    for p in procs:
        p.kill()
    if kind:
        sys.__excepthook__(kind, value, tb)


sys.excepthook = stop_all


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http(port, method, path, body=b"", headers=None, timeout=10):
    """One request on a new connection: (status, headers, body, seconds)."""
    started = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    if method == "POST" and "Content-Length" not in (headers or {}):
        head += f"Content-Length: {len(body)}\r\n"
    s.sendall(head.encode("latin-1") + b"\r\n" + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return status, hdrs, rest, time.time() - started


def invoke(port, body=b"1,2", headers=None):
    h = {"Content-Type": "text/csv"}
    h.update(headers or {})
    return http(port, "POST", "/endpoints/churn/invocations", body, h)


def closed_within(s, seconds):
    """Whether the server closes `s` within `seconds` (reads until EOF)."""
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


proc, port, admin = start("open", {})
pid = proc.pid

# --- memory: 1-byte chunks, then a stall --------------------------------
before = rss_kib(pid)
chunked = []
for _ in range(4):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /endpoints/churn/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    # 256 Ki one-byte chunks (1.5 MiB on the wire), then stall. A cost per
    # chunk of even 16 bytes would show as 16 MiB across the four; and the
    # four are sent well within the 5 s body timeout, even by a slow host.
    s.sendall(b"1\r\nx\r\n" * (256 * 1024))
    chunked.append(s)
time.sleep(0.5)
grown = rss_kib(pid) - before
# Each connection may hold its body (256 KiB) plus a frame; nothing per chunk.
assert grown < 4 * 256 + 8 * 1024, f"RSS grew {grown} KiB for 4 stalled bodies of 256 KiB"
started = time.time()
answers = []
for s in chunked:
    s.settimeout(10)
    answers.append(s.recv(4096).split(b"\r\n")[0])
    s.close()
waited = time.time() - started
assert all(b" 408 " in a for a in answers), answers
assert waited < 7, f"the stalled bodies were cut after {waited:.1f} s (BodyTimeoutSeconds 5)"
print(f"memory: 4 stalled bodies of 256 Ki 1-byte chunks grew RSS by {grown} KiB; "
      f"cut off with 408 after the 5 s body timeout")

# --- a declared length over the limit ------------------------------------
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"POST /endpoints/churn/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
          b"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n")
first = s.recv(4096).split(b"\r\n")[0]
s.close()
assert b" 413 " in first, first
print(f"content-length 100000000 with Expect: 100-continue: {first.decode()} at once, no 100 Continue")

# --- slowloris and idle keep-alive ---------------------------------------
slow = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"P")
    slow.append(s)
idle = []
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)  # answered; the connection stays open, idle
    idle.append(s)
cpu0, t0 = cpu_seconds(pid), time.time()
worst = 0.0
for i in range(10):
    for s in slow[:50]:
        try:
            s.sendall(b"O")
        except OSError:
            pass
    status, _, _, took = invoke(port)
    assert status == 200, status
    worst = max(worst, took)
    time.sleep(0.3)
cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
still_open = sum(not closed_within(s, 0.01) for s in slow + idle)
assert still_open == 0, f"{still_open} slow or idle connections still open after 3 s"
assert worst < 0.5, f"a well-behaved request took {worst:.2f} s among 300 slow connections"
assert cpu < 0.3, f"the endpoint used {cpu:.0%} of a core while holding slow connections"
for s in slow + idle:
    s.close()
print(f"slowloris: 200 byte-a-second header senders and 100 idle keep-alive connections closed "
      f"within 3 s; a normal request took at most {worst * 1000:.0f} ms meanwhile; endpoint CPU {cpu:.0%}")
status, _, body, took = invoke(port, b"slow")
assert status == 200 and took > 2, (status, took)
print(f"a request slower than the 1 s idle timeout is not cut: answered after {took:.1f} s")

# --- file descriptors exhausted -------------------------------------------
# A descriptor limit just above what the endpoint holds now.
held = len(os.listdir(f"/proc/{pid}/fd"))
soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 8, hard))
flood = []
for _ in range(80):
    try:
        flood.append(socket.create_connection(("127.0.0.1", port), timeout=1))
    except OSError:
        break
cpu0, t0 = cpu_seconds(pid), time.time()
time.sleep(2)
cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
assert cpu < 0.3, f"the endpoint used {cpu:.0%} of a core with its descriptors exhausted"
for s in flood:
    s.close()
deadline = time.time() + 10
while True:
    try:
        status, _, _, _ = invoke(port)
        if status == 200:
            break
    except OSError:
        pass
    assert time.time() < deadline, "no answer after the descriptor flood ended"
    time.sleep(0.2)
resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
print(f"descriptors exhausted (limit {held + 8}) by {len(flood)} connections: endpoint CPU {cpu:.0%}; answered again once they closed")

# --- the model's answer ---------------------------------------------------
status, hdrs, body, _ = invoke(port, b"big-error")
assert status == 424 and hdrs["x-amzn-errortype"] == "ModelError", (status, hdrs)
err = json.loads(body)
assert err["OriginalStatusCode"] == 500, err["OriginalStatusCode"]
assert len(err["OriginalMessage"]) == 2048 and len(err["message"]) <= 2048, len(body)
assert len(body) < 8192, len(body)
print(f"a 900 KiB model error became a {len(body)}-byte ModelError (OriginalMessage cut to 2048 characters)")
status, hdrs, body, _ = invoke(port, b"big-answer")
assert status == 424 and b"MaxResponseBytes" in body, (status, body[:200])
print("a 2 MiB model answer over MaxResponseBytes (1 MiB): 424 ModelError, not captured")

# --- SageMaker's header constraints ----------------------------------------
cases = {
    "inference id of 65 characters": {"X-Amzn-SageMaker-Inference-Id": "i" * 65},
    "inference id with a tab": {"X-Amzn-SageMaker-Inference-Id": "a\tb"},
    "content type over 1024 bytes": {"Content-Type": "text/" + "c" * 1024},
    "unknown target variant": {"X-Amzn-SageMaker-Target-Variant": "Z"},
}
for what, h in cases.items():
    status, hdrs, body, _ = invoke(port, b"1,2", h)
    assert status == 400 and hdrs["x-amzn-errortype"] == "ValidationError", (what, status, body)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"POST /endpoints/churn/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
          b"X-Amzn-SageMaker-Target-Variant: \xff\xfe\r\nContent-Length: 3\r\nConnection: close\r\n\r\n1,2")
first = s.recv(4096)
s.close()
assert b" 400 " in first.split(b"\r\n")[0] and b"ValidationError" in first, first[:200]
print(f"ValidationError (400) for: {', '.join(cases)}, non-UTF-8 target variant")

# --- the admin API ----------------------------------------------------------
def admin_call(method, path, body=b"", headers=None):
    h = {"Authorization": "Bearer s3cret-token", "Content-Type": "application/json"}
    h.update(headers or {})
    return http(admin, method, path, body, h)[0]


assert admin_call("GET", "/variants", headers={"Authorization": "Bearer s3cret-tokeX"}) == 401
assert admin_call("POST", "/variants/A", b'{"capture_enabled":false}', {"Content-Type": "text/plain"}) == 415
assert admin_call("POST", "/variants/A", b'{"capture_enabled":false}', {"Origin": "http://evil.example"}) == 403
assert admin_call("POST", "/variants/A", b'{"weight":0}') == 400, "every weight would be 0"
assert admin_call("POST", "/variants/B", b'{"weight":1e308}') == 200
assert admin_call("POST", "/variants/A", b'{"weight":1e308}') == 400, "the sum would overflow"
assert admin_call("POST", "/variants/B", b'{"weight":0}') == 200
status, _, body, _ = http(admin, "GET", "/variants", headers={"Authorization": "Bearer s3cret-token"})
assert [v["capture_enabled"] for v in json.loads(body)] == [True, True], body
print("admin: wrong token, text/plain state change, foreign Origin, all-zero and overflowing weights refused")

# --- /metrics: a Prometheus parser reads it; its names follow the conventions.
from prometheus_client.parser import text_string_to_metric_families

status, _, body, _ = http(admin, "GET", "/metrics", headers={"Authorization": "Bearer s3cret-token"})
assert status == 200
families = list(text_string_to_metric_families(body.decode()))
kinds = {}
for line in body.decode().splitlines():
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        kinds[name] = kind
for name, kind in kinds.items():
    assert (kind == "counter") == name.endswith("_total") or kind == "histogram", (name, kind)
    assert "millis" not in name and not name.endswith("_ms"), name
assert kinds["capline_endpoint_request_duration_seconds"] == "histogram"
assert kinds["capline_delivery_lag_seconds"] == "gauge"
samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
assert samples[("capline_kept_total", (("variant", "A"),))] >= 1, samples
print(f"metrics: {len(families)} families parsed by prometheus_client; counters end in _total, "
      f"durations in seconds")

# --- authentication -----------------------------------------------------------
pings["n"] = 0
sproc, sport, _ = start("signed", {
    "AccessKeys": [{"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret"}],
    "Region": "us-east-1",
    "PingCacheMillis": 1000,
})
for path in ("/invocations", "/endpoints/churn/invocations", "/endpoints/nope/invocations"):
    status = http(sport, "POST", path, b"1,2", {"Content-Type": "text/csv"})[0]
    assert status == 403, (path, status)
status = http(sport, "POST", "/endpoints/churn/invocations", b"1,2",
              {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Variant": "nope"})[0]
assert status == 403, status


def signed(region, path="/endpoints/churn/invocations"):
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{sport}{path}", data=b"1,2",
                     headers={"Content-Type": "text/csv"})
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "sagemaker", region).add_auth(req)
    p = req.prepare()
    own = ("host", "content-length", "connection")
    return http(sport, "POST", path, b"1,2", {k: v for k, v in p.headers.items() if k.lower() not in own})


assert signed("us-east-1")[0] == 200
assert signed("us-east-1", "/invocations")[0] == 200
status, _, body, _ = signed("eu-west-1")
assert status == 403 and b"region" in body, (status, body)
results = []


def ping():
    results.append(http(sport, "GET", "/ping"))


threads = [threading.Thread(target=ping) for _ in range(100)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert all(r[0] == 200 and json.loads(r[2]) == {"status": "Healthy"} for r in results)
assert pings["n"] <= 4, f"100 pings reached the model {pings['n']} times"
print(f"auth: unsigned requests to every model route and to unknown names: 403; another region: 403; "
      f"100 parallel /ping reached the model {pings['n']} times, naming no variant")

stop_all()
print("endpoint_limits: ok")
