"""Shared fixtures: a config for a fresh spool and destination, the
`capline` binary (for `capline cat --validate`), and reading back what an
engine delivered."""

import base64
import glob
import json
import os
import socket
import subprocess

import pytest


def make_config(tmp, **engine):
    """A config capturing both sides into `tmp/dest`, spool in `tmp/spool`."""
    return {
        "EndpointName": "py-test",
        "DataCaptureConfig": {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"file://{tmp}/dest",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        },
        "Engine": dict({"SpoolDir": f"{tmp}/spool"}, **engine),
    }


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


def decode(side):
    """The bytes of one captured side, by its encoding."""
    if side["encoding"] == "BASE64":
        return base64.b64decode(side["data"])
    return side["data"].encode("utf-8")


def delivered(dest):
    """Every record under `dest`, in file order, as parsed JSON."""
    records = []
    for path in sorted(glob.glob(os.path.join(dest, "**", "*.jsonl"), recursive=True)):
        with open(path, "rb") as f:
            for line in f.read().splitlines():
                records.append(json.loads(line))
    return records


def validate(dest):
    """`capline cat --validate` on everything under `dest` (must pass)."""
    out = subprocess.run([os.environ["CAPLINE_BIN"], "cat", "--validate", dest], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
