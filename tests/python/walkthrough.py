"""The seed walkthrough ("Capture data from real-time endpoint"), run
literally with the SageMaker Python SDK against `capline endpoint`.

Usage: python walkthrough.py CAPLINE_BIN S3_ENDPOINT_URL

For each destination, a local folder (file://) and an S3 bucket on the given
S3-compatible server (moto in the test script):
- a churn model server (the SageMaker container contract: GET /ping,
  POST /invocations, a fixed logistic function of 69 CSV features) starts on
  a loopback port, and `capline endpoint` in front of it with the
  walkthrough's DataCaptureConfig (100 %, Input and Output);
- the walkthrough's invocation step runs as written: a `Predictor` with
  `CSVSerializer()` and `JSONDeserializer()`, the `validation.csv` loop with
  `cutoff = 0.8` and `limit = 200` (which sends 201 rows: the loop breaks
  after `i > limit`), writing `validation_with_predictions.csv`. The one change:
  `sleep(0.5)` becomes `sleep(0.01)` to keep the test short. The SDK reaches
  capline through `endpoint_url`, and its SigV4 signatures are verified
  (`AccessKeys` in the endpoint config);
- after SIGTERM (capline delivers what it holds), "View Captured Data" runs as
  the notebook does (list the capture files under
  `{prefix}/{endpoint_name}`, read one, `json.loads` its first line), then
  every record is checked against what the SDK sent and received.
Exits non-zero on the first mismatch.
"""

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer

import boto3
import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer

from container import ContainerModel, free_port

capline_bin, s3_endpoint_url = sys.argv[1], sys.argv[2]
region = "us-east-1"
endpoint_name = "DEMO-ModelMonitor-churn"
data_capture_prefix = "sagemaker/DEMO-ModelMonitor/datacapture"
FEATURES = 69


def score(x):
    z = -8.0 + 0.018 * x[2] + 0.006 * x[4] + 0.002 * x[6] + 0.09 * x[8] + 0.55 * x[10] + 2.1 * x[66] - 1.2 * x[68]
    return 1.0 / (1.0 + math.exp(-z))


class ChurnModel(ContainerModel):
    """The container contract; answers JSON when the client accepts it."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        x = [float(c) for c in body.strip().split(",")]
        assert len(x) == FEATURES, len(x)
        p = score(x)
        if "application/json" in self.headers.get("Accept", ""):
            out, ctype = json.dumps(p).encode(), "application/json"
        else:
            out, ctype = str(p).encode(), "text/csv; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def write_validation_csv(path, rows=300):
    """label,69 features per line, as the walkthrough's test_data/validation.csv."""
    rng = random.Random(7)
    with open(path, "w") as f:
        for _ in range(rows):
            x = [0] * FEATURES
            x[0] = rng.randint(1, 243)
            x[1] = 0 if rng.random() < 0.7 else rng.randint(10, 50)
            for i, hi in ((2, 350), (4, 360), (6, 390), (8, 20)):
                x[i] = round(rng.uniform(0, hi), 1)
            for i, (lo, hi) in ((3, (50, 160)), (5, (50, 160)), (7, (40, 170)), (9, (0, 20)), (10, (0, 9))):
                x[i] = rng.randint(lo, hi)
            x[11 + rng.randint(0, 50)] = 1
            x[62 + rng.randint(0, 2)] = 1
            x[65 + (rng.random() < 0.1)] = 1
            x[67 + (x[1] > 0)] = 1
            label = int(rng.random() < 0.15)
            f.write(f"{label}," + ",".join(str(v) for v in x) + "\n")


def run_walkthrough(destination, engine_s3, work):
    model = ThreadingHTTPServer(("127.0.0.1", 0), ChurnModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    port, admin_port = free_port(), free_port()
    config = {
        "EndpointName": endpoint_name,
        "Listen": f"127.0.0.1:{port}",
        "AdminListen": f"127.0.0.1:{admin_port}",
        "AccessKeys": [{"AccessKeyId": os.environ["AWS_ACCESS_KEY_ID"],
                        "SecretAccessKey": os.environ["AWS_SECRET_ACCESS_KEY"]}],
        "ProductionVariants": [{"VariantName": "AllTraffic", "InitialVariantWeight": 1,
                                "ModelUrl": f"http://127.0.0.1:{model.server_port}"}],
        # As the walkthrough builds it with DataCaptureConfig(...).
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
        },
        "Engine": dict({"SpoolDir": os.path.join(work, "spool")}, **engine_s3),
    }
    cfg_path = os.path.join(work, "endpoint.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    proc = subprocess.Popen([capline_bin, "endpoint", "--config", cfg_path], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        # The walkthrough's Predictor; the SDK reaches capline through endpoint_url.
        boto_session = boto3.Session(region_name=region)
        sagemaker_session = sagemaker.Session(
            boto_session=boto_session,
            sagemaker_runtime_client=boto_session.client(
                "sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}"))
        predictor = Predictor(endpoint_name=endpoint_name,
                              sagemaker_session=sagemaker_session,
                              serializer=CSVSerializer(),
                              deserializer=JSONDeserializer())

        os.makedirs(os.path.join(work, "test_data"), exist_ok=True)
        write_validation_csv(os.path.join(work, "test_data", "validation.csv"))
        os.chdir(work)

        # The walkthrough's loop, as written (sleep shortened).
        from time import sleep
        validate_dataset = "validation_with_predictions.csv"
        cutoff = 0.8
        limit = 200
        i = 0
        with open(f"test_data/{validate_dataset}", "w") as validation_file:
            validation_file.write("probability,prediction,label\n")  # CSV header
            with open("test_data/validation.csv", "r") as f:
                for row in f:
                    (label, input_cols) = row.split(",", 1)
                    probability = float(predictor.predict(input_cols))
                    prediction = "1" if probability > cutoff else "0"
                    validation_file.write(f"{probability},{prediction},{label}\n")
                    i += 1
                    if i > limit:
                        break
                    print(".", end="", flush=True)
                    sleep(0.01)
        print()
        print("Done!")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        model.shutdown()
    assert proc.returncode == 0, out
    assert "pending 0" in out, out

    # What the SDK sent and got back, from the walkthrough's own files.
    with open("test_data/validation.csv") as f:
        sent = [line.split(",", 1)[1] for line in f][: limit + 1]
    with open(f"test_data/{validate_dataset}") as f:
        got = [float(line.split(",")[0]) for line in list(f)[1:]]
    assert len(sent) == len(got) == 201, (len(sent), len(got))
    return sent, got


def check_records(files, read, sent, got, prefix):
    layout = re.compile(re.escape(prefix) + r"/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/"
                        r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")
    records = []
    for name in files:
        assert layout.search(name), f"layout: {name}"
        body = read(name)
        assert body.endswith("\n"), name
        for line in body[:-1].split("\n"):
            rec = json.loads(line)
            assert list(rec) == ["captureData", "eventMetadata", "eventVersion"], rec.keys()
            inp, out = rec["captureData"]["endpointInput"], rec["captureData"]["endpointOutput"]
            assert (inp["observedContentType"], inp["mode"], inp["encoding"]) == ("text/csv", "INPUT", "CSV"), inp
            assert (out["observedContentType"], out["mode"], out["encoding"]) == (
                "application/json", "OUTPUT", "JSON"), out
            assert rec["eventVersion"] == "0"
            assert re.match(r"^[0-9a-f-]{36}$", rec["eventMetadata"]["eventId"])
            records.append((inp["data"], float(out["data"])))
    assert sorted(records) == sorted(zip(sent, got)), "captured pairs differ from what the SDK sent and received"
    return len(records)


def local(work):
    dest = os.path.join(work, "capture")
    sent, got = run_walkthrough(f"file://{dest}", {}, work)
    # View Captured Data: the capture files under {destination}/{endpoint_name}.
    current_endpoint_capture_prefix = os.path.join(dest, endpoint_name)
    capture_files = sorted(
        os.path.join(d, n)
        for d, _, names in os.walk(current_endpoint_capture_prefix) for n in names if n.endswith(".jsonl"))
    print("Found Capture Files:")
    print("\n ".join(capture_files))
    with open(capture_files[-1]) as f:
        capture_file = f.read().split("\n")
    print(json.dumps(json.loads(capture_file[0]), indent=2))
    n = check_records(capture_files, lambda p: open(p).read(), sent, got, current_endpoint_capture_prefix)
    print(f"walkthrough (file://): Predictor sent {len(sent)} rows; {len(capture_files)} file(s), {n} records match")


def s3(work):
    bucket = f"capline-walkthrough-{os.getpid()}"
    s3_client = boto3.Session(region_name=region).client("s3", endpoint_url=s3_endpoint_url)
    s3_client.create_bucket(Bucket=bucket)
    s3_capture_upload_path = f"s3://{bucket}/{data_capture_prefix}"
    sent, got = run_walkthrough(
        s3_capture_upload_path,
        {"S3": {"EndpointUrl": s3_endpoint_url, "ForcePathStyle": True, "Region": region}}, work)
    # View Captured Data, as in the notebook.
    current_endpoint_capture_prefix = "{}/{}".format(data_capture_prefix, endpoint_name)
    result = s3_client.list_objects(Bucket=bucket, Prefix=current_endpoint_capture_prefix)
    capture_files = [capture_file.get("Key") for capture_file in result.get("Contents")]
    print("Found Capture Files:")
    print("\n ".join(capture_files))

    def get_obj_body(obj_key):
        return s3_client.get_object(Bucket=bucket, Key=obj_key).get("Body").read().decode("utf-8")

    capture_file = get_obj_body(capture_files[-1])
    print(capture_file[:2000])
    print(json.dumps(json.loads(capture_file.split("\n")[0]), indent=2))
    n = check_records(capture_files, get_obj_body, sent, got, current_endpoint_capture_prefix)
    print(f"walkthrough (s3://, {s3_endpoint_url}): Predictor sent {len(sent)} rows; "
          f"{len(capture_files)} object(s), {n} records match")


local(tempfile.mkdtemp())
s3(tempfile.mkdtemp())
