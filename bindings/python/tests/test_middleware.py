"""The ASGI and WSGI middleware in real servers: a FastAPI app under uvicorn
and a Flask app under gunicorn, each a process of its own, driven by a real
HTTP client (requests). Every captured pair must equal what the client sent
and received; failures, other paths and GETs are not captured; a body over
MaxRecordBytes is counted as dropped_too_large, not buffered; the output
passes `capline cat --validate`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import decode, delivered, free_port, make_config, validate

APPS = os.path.join(os.path.dirname(__file__), "apps")
LIMIT = 256 * 1024


def server_command(kind, port):
    if kind == "asgi":
        return [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1",
                "--port", str(port), "--app-dir", APPS, "--log-level", "warning"]
    return [sys.executable, "-m", "gunicorn", "--chdir", APPS, "-w", "1", "--threads", "4",
            "-b", f"127.0.0.1:{port}", "--log-level", "warning", "flask_app:app"]


@pytest.fixture(params=["asgi", "wsgi"])
def server(request, tmp_path):
    port = free_port()
    config = make_config(tmp_path, MaxRecordBytes=LIMIT, SegmentMaxAgeSeconds=1)
    env = dict(os.environ, CAPLINE_CONFIG=json.dumps(config), PYTHONPATH=APPS)
    proc = subprocess.Popen(server_command(request.param, port), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(base + "/ping", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"{request.param} server did not start:\n{proc.stdout.read()}")
        time.sleep(0.1)
    yield request.param, base, proc, tmp_path / "dest"
    if proc.poll() is None:
        proc.kill()


def stop(proc):
    """A graceful stop: SIGTERM, then the app closes its engine. (uvicorn
    re-raises the signal once it has shut down, so it ends "by" SIGTERM.)"""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM), out


def test_captures_what_the_client_sent_and_received(server):
    kind, base, proc, dest = server
    sent = {}  # inference id -> (request body, request type, response body, response type)

    def invoke(iid, body, ctype, **kw):
        headers = {"Content-Type": ctype, "X-Amzn-SageMaker-Inference-Id": iid}
        r = requests.post(base + "/invocations", data=body, headers=headers, timeout=10, **kw)
        return r

    cases = [
        ("csv", b"1,2,3,4\n", "text/csv"),
        ("json", json.dumps({"instances": [[1, 2], [3, 4]]}).encode(), "application/json"),
        ("binary", bytes(range(256)) * 40, "application/x-npy"),
        ("utf8-invalid-csv", b"1,\xff,\xfe\n", "text/csv"),
        ("empty", b"", "text/csv"),
        ("stream", b"stream:50", "text/csv"),
    ]
    for iid, body, ctype in cases:
        r = invoke(iid, body, ctype)
        assert r.status_code == 200, (iid, r.status_code, r.text)
        sent[iid] = (body, ctype, r.content, r.headers["Content-Type"])
    # A request body streamed by the client (chunked transfer encoding).
    parts = [b"5,", b"6,", b"7\n"]
    r = invoke("chunked", iter(parts), "text/csv")
    assert r.status_code == 200
    sent["chunked"] = (b"".join(parts), "text/csv", r.content, r.headers["Content-Type"])

    # Not captured: a model failure, another path, a GET.
    assert invoke("fail", b"fail", "text/csv").status_code == 500
    assert requests.post(base + "/other", data=b"x", headers={"X-Amzn-SageMaker-Inference-Id": "other"}).status_code == 200
    assert requests.get(base + "/ping").status_code == 200
    # Too large to buffer: counted, not captured.
    big = b"z" * (LIMIT + 1)
    assert invoke("too-large", big, "application/octet-stream").content == bytes(reversed(big))

    stats = requests.get(base + "/stats").json()
    assert stats["kept"] == len(sent), stats
    assert stats["dropped_too_large"] == 1, stats
    assert stats["calls"] == len(sent) + 1, stats
    stop(proc)

    got = {r["eventMetadata"]["inferenceId"]: r for r in delivered(dest)}
    assert set(got) == set(sent), (sorted(got), sorted(sent))
    for iid, (body, ctype, out, otype) in sent.items():
        cd = got[iid]["captureData"]
        assert decode(cd["endpointInput"]) == body, (kind, iid)
        assert cd["endpointInput"]["observedContentType"] == ctype, (kind, iid)
        assert decode(cd["endpointOutput"]) == out, (kind, iid)
        assert cd["endpointOutput"]["observedContentType"] == otype, (kind, iid)
    assert decode(got["stream"]["captureData"]["endpointOutput"]).count(b"chunk") == 50
    assert got["utf8-invalid-csv"]["captureData"]["endpointInput"]["encoding"] == "BASE64"
    validate(str(dest))


def test_many_clients_at_once(server):
    kind, base, proc, dest = server
    import concurrent.futures

    def one(i):
        r = requests.post(base + "/invocations", data=f"{i},1\n".encode(),
                          headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": f"c{i}"}, timeout=10)
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(400)))
    assert codes == [200] * 400
    stop(proc)
    ids = [r["eventMetadata"]["inferenceId"] for r in delivered(dest)]
    assert sorted(ids) == sorted(f"c{i}" for i in range(400))
    validate(str(dest))


def test_server_sent_events_pass_as_they_come_and_are_captured_whole(server):
    """An OpenAI-style SSE stream (8 events, 150 ms apart): the client reads
    the first event long before the last is made, and the captured answer is
    the whole stream, byte for byte, with its content type."""
    kind, base, proc, dest = server
    r = requests.post(base + "/v1/chat/completions", json={"max_tokens": 8, "delay": 0.15},
                      headers={"X-Amzn-SageMaker-Inference-Id": "sse-1"}, stream=True, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    started, first, got = time.monotonic(), None, b""
    for chunk in r.iter_content(chunk_size=None):
        if first is None:
            first = time.monotonic() - started
        got += chunk
    total = time.monotonic() - started
    assert got.count(b"data: ") == 9 and got.endswith(b"data: [DONE]\n\n"), got
    assert first is not None and first < total - 0.6, (kind, first, total)
    stop(proc)
    records = {r["eventMetadata"]["inferenceId"]: r for r in delivered(dest)}
    out = records["sse-1"]["captureData"]["endpointOutput"]
    assert decode(out) == got, kind
    assert out["observedContentType"].startswith("text/event-stream"), out
    validate(str(dest))
