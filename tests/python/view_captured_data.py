"""The seed walkthrough's "View Captured Data" step, run with boto3 against
what `capline demo` delivered to an S3-compatible server.

Usage: python view_captured_data.py CAPLINE_BIN ENDPOINT_URL

Runs `capline demo --destination s3://BUCKET/PREFIX --s3-endpoint-url URL`,
then lists and reads the capture files exactly as the SageMaker example
notebook does (list_objects with the endpoint's prefix, get_object, the first
line through json.loads), and checks the layout, every line's schema, the
record count and the object metadata. Exits non-zero on the first mismatch.
"""

import json
import os
import re
import subprocess
import sys

import boto3

capline_bin, endpoint_url = sys.argv[1], sys.argv[2]
bucket = f"capline-view-{os.getpid()}"
data_capture_prefix = "sagemaker/DEMO-ModelMonitor/datacapture"
endpoint_name = "DEMO-churn"

run = subprocess.run(
    [capline_bin, "demo",
     "--destination", f"s3://{bucket}/{data_capture_prefix}",
     "--s3-endpoint-url", endpoint_url],
    capture_output=True, text=True, cwd=os.environ.get("TMPDIR", "/tmp"))
assert run.returncode == 0, run.stdout + run.stderr

# As in the notebook.
s3_client = boto3.Session().client("s3", endpoint_url=endpoint_url)
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

# Checks.
layout = re.compile(
    re.escape(current_endpoint_capture_prefix)
    + r"/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")
records = 0
for key in capture_files:
    assert layout.match(key), f"layout: {key}"
    assert "//" not in key, key
    body = get_obj_body(key)
    assert body.endswith("\n"), key
    lines = body[:-1].split("\n")
    for line in lines:
        rec = json.loads(line)
        assert list(rec) == ["captureData", "eventMetadata", "eventVersion"], rec.keys()
        assert rec["eventVersion"] == "0"
        inp, out = rec["captureData"]["endpointInput"], rec["captureData"]["endpointOutput"]
        assert (inp["mode"], inp["encoding"], inp["observedContentType"]) == ("INPUT", "CSV", "text/csv")
        assert (out["mode"], out["encoding"]) == ("OUTPUT", "CSV")
        assert out["observedContentType"] == "text/csv; charset=utf-8"
        assert len(inp["data"].rstrip("\n").split(",")) == 69, inp["data"]
        float(out["data"])
        assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", rec["eventMetadata"]["inferenceTime"])
    head = s3_client.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["capline-records"] == str(len(lines)), head["Metadata"]
    records += len(lines)
assert records == 200, records
print(f"view_captured_data: {len(capture_files)} file(s), {records} records, layout and schema ok")
