"""capture() from Python against what a Python team writes in an afternoon,
in one run.

Usage: python capture_bench.py [ROUNDS]

- capline: `engine.capture(request, response, ...)` into a real engine (its
  Rust writer thread writes segments to a temporary spool; a 1 GiB ring, so
  every call is kept: the run asserts no ring-full drop).
- baseline: the SageMaker record built as a dict (`base64` for a binary
  body, `uuid4` event id, ISO time), `json.dumps`, and `queue.Queue.put` for
  a writer thread that appends each line to a file.

For 1 KiB + 1 KiB CSV pairs and 16 KiB + 1 KiB JSON pairs it times N calls
with `time.perf_counter_ns` on one thread, after a warm-up, and prints
nanoseconds per call and the ratio baseline / capline (median of ROUNDS).
"""

import base64
import datetime
import json
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

import capline

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CSV_TYPES = {"text/csv"}
JSON_TYPES = {"application/json"}


class Afternoon:
    """The capture a Python team writes in an afternoon."""

    def __init__(self, path):
        self.q = queue.Queue(maxsize=65536)
        self.f = open(path, "a")
        self.t = threading.Thread(target=self._write, daemon=True)
        self.t.start()

    def _write(self):
        while True:
            line = self.q.get()
            if line is None:
                break
            self.f.write(line)
            self.f.write("\n")

    @staticmethod
    def _side(body, ctype, mode):
        if ctype in CSV_TYPES or ctype in JSON_TYPES:
            try:
                return {"observedContentType": ctype, "mode": mode, "data": body.decode("utf-8"),
                        "encoding": "CSV" if ctype in CSV_TYPES else "JSON"}
            except UnicodeDecodeError:
                pass
        return {"observedContentType": ctype, "mode": mode,
                "data": base64.b64encode(body).decode("ascii"), "encoding": "BASE64"}

    def capture(self, req, resp, req_type, resp_type, inference_id):
        record = {
            "captureData": {
                "endpointInput": self._side(req, req_type, "INPUT"),
                "endpointOutput": self._side(resp, resp_type, "OUTPUT"),
            },
            "eventMetadata": {
                "eventId": str(uuid.uuid4()),
                "inferenceId": inference_id,
                "inferenceTime": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "eventVersion": "0",
        }
        self.q.put(json.dumps(record))

    def close(self):
        self.q.put(None)
        self.t.join()
        self.f.close()


def per_call_ns(fn, n):
    for _ in range(min(n // 10, 2000)):
        fn()  # warm-up
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def main():
    work = tempfile.mkdtemp(prefix="capline-pybench-")
    shapes = [
        ("1 KiB CSV + 1 KiB CSV", b"1.5," * 256, "text/csv", b"0.25," * 204 + b"0.25", "text/csv", 100_000),
        ("16 KiB JSON + 1 KiB JSON", json.dumps({"x": [0.5] * 3200}).encode()[:16384], "application/json",
         json.dumps({"y": [0.25] * 200}).encode()[:1024], "application/json", 20_000),
    ]
    print(f"{'shape':28} {'capline ns/call':>16} {'baseline ns/call':>17} {'baseline / capline':>19}")
    for name, req, req_type, resp, resp_type, n in shapes:
        ratios, ours, theirs = [], [], []
        for r in range(ROUNDS):
            spool = os.path.join(work, f"spool-{len(name)}-{r}")
            engine = capline.Engine({
                "EndpointName": "bench",
                "DataCaptureConfig": {
                    "InitialSamplingPercentage": 100,
                    "DestinationS3Uri": f"file://{work}/dest",
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                                 "JsonContentTypes": ["application/json"]},
                },
                "Engine": {"SpoolDir": spool, "RingBytes": 1024 * 1024 * 1024},
            })
            ns_c = per_call_ns(lambda: engine.capture(req, resp, request_content_type=req_type,
                                                      response_content_type=resp_type, inference_id="id-1"), n)
            stats = engine.close()
            base = Afternoon(os.path.join(work, f"afternoon-{r}.jsonl"))
            ns_b = per_call_ns(lambda: base.capture(req, resp, req_type, resp_type, "id-1"), n)
            base.close()
            assert stats["dropped_ring_full"] == 0, stats
            ours.append(ns_c)
            theirs.append(ns_b)
            ratios.append(ns_b / ns_c)
        print(f"{name:28} {statistics.median(ours):16.0f} {statistics.median(theirs):17.0f} "
              f"{statistics.median(ratios):18.1f}x   (rounds: {', '.join(f'{x:.1f}' for x in ratios)})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
