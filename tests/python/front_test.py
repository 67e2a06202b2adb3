"""`capline endpoint`'s own reader of plain invocations (the front) and its
hand-over to hyper, with raw sockets: every request on one keep-alive
connection is answered, in order, whatever mix of plain and other requests
it carries, and each answered invocation is captured once.

Usage: python front_test.py CAPLINE_BIN

On one connection, in turn:
- two plain invocations sent in one write (pipelined): two answers, in order,
  with Content-Length, Date and the invoked variant;
- a head sent a few bytes at a time, and a body in two writes;
- a plain invocation, then a chunked one (hyper's from there on), then a
  plain one again (still hyper's): three answers;
On other connections: a ping first; `Expect: 100-continue` (100, then 200);
a declared length over MaxPayloadBytes (413 at once); two different Content-Lengths
(400); HTTP/1.0 with no keep-alive (answered, then closed); `Connection:
close` (answered, then closed); a bad endpoint name (400 ValidationError);
a body that stalls (408 after BodyTimeoutSeconds, then closed); a client
that closes halfway through a body (nothing answered, nothing captured).
Then the metrics: answered 2xx invocations == kept records.
"""

import socket
import subprocess
import sys
import tempfile
import time

from container import ContainerModel, free_port, serve, start_endpoint

capline_bin = sys.argv[1]


class Model(ContainerModel):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = b"echo:" + body
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


model = serve(Model)
work = tempfile.mkdtemp()
port, admin = free_port(), free_port()
config = {
    "EndpointName": "front",
    "Listen": f"127.0.0.1:{port}",
    "AdminListen": f"127.0.0.1:{admin}",
    "AdminToken": "s3cret-token",
    "MaxPayloadBytes": 65536,
    "BodyTimeoutSeconds": 1,
    "HeaderTimeoutSeconds": 5,
    "ProductionVariants": [{"VariantName": "A", "ModelUrl": f"http://127.0.0.1:{model.server_port}"}],
    "DataCaptureConfig": {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"file://{work}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    },
    "Engine": {"SpoolDir": f"{work}/spool"},
}
proc = start_endpoint(capline_bin, config, work)
PATH = "/endpoints/front/invocations"


def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def request(body, path=PATH, extra="", length=True):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n{extra}"
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Reader:
    """Reads HTTP/1.1 responses off one socket, in order."""

    def __init__(self, s):
        self.s, self.buf = s, b""

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = int(headers.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self, seconds=3):
        self.s.settimeout(seconds)
        try:
            while True:
                self._fill()
        except EOFError:
            return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


answered = 0


def echoed(r, payload):
    """Reads the next answer on `r`: the model's echo of `payload`; counts it."""
    global answered
    status, headers, body = r.response()
    assert (status, body) == (200, b"echo:" + payload), (status, body[:60])
    answered += 1
    return headers

# Pipelined plain invocations, then a head in pieces, on one connection.
s = connect()
r = Reader(s)
s.sendall(request(b"1,1") + request(b"2,2"))
for payload in (b"1,1", b"2,2"):
    h = echoed(r, payload)
    assert h["x-amzn-invoked-production-variant"] == "A", h
    assert h["content-type"] == "text/csv" and "date" in h and h["content-length"] == str(len(payload) + 5), h
whole = request(b"3,3" * 100)
head_end = whole.index(b"\r\n\r\n") + 4
for i in range(0, head_end, 7):
    s.sendall(whole[i:min(i + 7, head_end)])
    time.sleep(0.01)
s.sendall(whole[head_end:head_end + 50])
time.sleep(0.1)
s.sendall(whole[head_end + 50:])
echoed(r, b"3,3" * 100)

# Plain, then chunked (hyper from there on), then plain again.
chunked = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
           "Transfer-Encoding: chunked\r\n\r\n3\r\n4,4\r\n0\r\n\r\n").encode()
s.sendall(request(b"5,5") + chunked + request(b"6,6"))
for payload in (b"5,5", b"4,4", b"6,6"):
    echoed(r, payload)
s.close()
print(f"one connection: 2 pipelined, 1 in pieces, plain/chunked/plain: {answered} answers in order")

# A ping first, then an invocation: hyper serves both.
s = connect()
r = Reader(s)
s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" + request(b"7,7"))
assert r.response()[0] == 200
echoed(r, b"7,7")
s.close()

# Expect: 100-continue: hyper answers 100, then the invocation.
s = connect()
r = Reader(s)
s.sendall(request(b"8,8", extra="Expect: 100-continue\r\n")[:-3])
assert r.response()[0] == 100
s.sendall(b"8,8")
echoed(r, b"8,8")
s.close()

# Over MaxPayloadBytes: 413 before the body.
s = connect()
r = Reader(s)
s.sendall(request(b"", extra="Content-Length: 100000\r\n", length=False))
status, h, _ = r.response()
assert status == 413 and h["x-amzn-errortype"] == "ValidationError", (status, h)
s.close()

# Two different Content-Lengths: refused.
s = connect()
r = Reader(s)
s.sendall(request(b"9,9", extra="Content-Length: 4\r\n"))
assert r.response()[0] == 400
s.close()

# HTTP/1.0 and Connection: close: answered, then closed.
for raw in (request(b"a,a").replace(b"HTTP/1.1", b"HTTP/1.0"), request(b"a,a", extra="Connection: close\r\n")):
    s = connect()
    r = Reader(s)
    s.sendall(raw)
    echoed(r, b"a,a")
    assert r.closed(), "the connection stays open"
    s.close()

# An unknown endpoint name: 400 ValidationError, and the connection goes on.
s = connect()
r = Reader(s)
s.sendall(request(b"b,b", path="/endpoints/other/invocations") + request(b"c,c"))
status, h, _ = r.response()
assert status == 400 and h["x-amzn-errortype"] == "ValidationError", (status, h)
echoed(r, b"c,c")
s.close()
print("hyper's from the first other request: ping, 100-continue, 413, two lengths 400, "
      "HTTP/1.0 and Connection: close closed after the answer, an unknown name 400")

# A stalled body: 408 after the body timeout, then closed.
s = connect()
r = Reader(s)
started = time.time()
s.sendall(request(b"x" * 100)[:-50])
status, h, _ = r.response()
took = time.time() - started
assert status == 408 and 0.9 < took < 4, (status, took)
assert r.closed(), "the connection stays open after a 408"
s.close()

# A client gone halfway through a body: nothing answered, nothing captured.
s = connect()
s.sendall(request(b"y" * 100)[:-50])
time.sleep(0.1)
s.close()
print(f"a stalled body: 408 after {took:.1f} s, closed; a client gone mid-body: not captured")

# Every answered invocation kept once.
time.sleep(0.3)
metrics = subprocess.run([capline_bin, "ctl", "--admin", f"127.0.0.1:{admin}", "--token", "s3cret-token", "metrics"],
                         capture_output=True, text=True, check=True).stdout
kept = int([l for l in metrics.splitlines() if l.startswith('capline_kept_total{variant="A"}')][0].split()[-1])
ok = int([l for l in metrics.splitlines()
          if l.startswith('capline_endpoint_requests_total{variant="A",code="2xx"}')][0].split()[-1])
assert kept == ok == answered, (kept, ok, answered)
proc.terminate()
proc.wait(timeout=30)
print(f"front_test: ok ({answered} invocations answered, {kept} kept)")
