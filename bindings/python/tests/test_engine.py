"""`capline.Engine` from Python: configs, outcomes, argument types, times,
byte-exact payloads, threads, and the engine's lifecycle."""

import datetime
import json
import os
import threading

import pytest

import capline
from conftest import decode, delivered, make_config, validate


def capture(engine, req=b"1,2", resp=b"0.5", **kw):
    kw.setdefault("request_content_type", "text/csv")
    kw.setdefault("response_content_type", "text/csv")
    return engine.capture(req, resp, **kw)


def test_dict_and_json_string_configs_in_both_shapes(tmp_path):
    api = make_config(tmp_path / "a")
    with capline.Engine(api) as e:
        assert capture(e) == capline.Outcome.KEPT
    sdk = {
        "EndpointName": "py-sdk",
        "DataCaptureConfig": {
            "enable_capture": True,
            "sampling_percentage": 100,
            "destination_s3_uri": f"file://{tmp_path}/b/dest",
            "csv_content_types": ["text/csv"],
        },
        "Engine": {"SpoolDir": f"{tmp_path}/b/spool"},
    }
    with capline.Engine(json.dumps(sdk)) as e:
        assert capture(e).kept
    assert len(delivered(tmp_path / "a" / "dest")) == 1
    assert len(delivered(tmp_path / "b" / "dest")) == 1


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda c: c.update(EndpointName="no spaces"), "EndpointName"),
        (lambda c: c["DataCaptureConfig"].update(InitialSamplingPercentage=101), "DataCaptureConfig.InitialSamplingPercentage"),
        (lambda c: c["DataCaptureConfig"].update(DestinationS3Uri="ftp://x"), "DataCaptureConfig.DestinationS3Uri"),
        (lambda c: c["Engine"].update(RingBytes=1), "Engine.RingBytes"),
        (lambda c: c.update(Colour=1), "Colour"),
    ],
)
def test_a_bad_config_raises_config_error_naming_the_field(config, change, field):
    change(config)
    with pytest.raises(capline.ConfigError) as e:
        capline.Engine(config)
    assert str(e.value).startswith(field + ":"), str(e.value)
    assert isinstance(e.value, ValueError)


def test_bad_argument_types_raise_type_error(config):
    with pytest.raises(TypeError):
        capline.Engine(42)
    with pytest.raises(capline.ConfigError):
        capline.Engine("{not json")
    with capline.Engine(config) as e:
        for bad in (1, None, 1.5, [b"x"], {"a": 1}):
            with pytest.raises(TypeError):
                capture(e, req=bad)
            with pytest.raises(TypeError):
                capture(e, resp=bad)
        with pytest.raises(TypeError):
            capture(e, request_content_type=b"text/csv")
        with pytest.raises(TypeError):
            capture(e, inference_id=7)
        with pytest.raises(TypeError):
            capture(e, time="2024-01-01")
        with pytest.raises(TypeError):
            e.capture(b"1", b"2")  # content types are required
        with pytest.raises(ValueError):
            e.set_sampling_percentage(150)
        with pytest.raises(ValueError):
            e.flush(timeout=-1)
        assert e.stats()["calls"] == 0, "a call that raised is no call"


def test_every_outcome_and_exact_accounting(config):
    config["Engine"]["MaxRecordBytes"] = 1024
    with capline.Engine(config) as e:
        assert capture(e) == capline.Outcome.KEPT
        assert capture(e, inference_id="x" * 65) == capline.Outcome.REJECTED_INFERENCE_ID
        assert capture(e, request_content_type="t" * 1025) == capline.Outcome.REJECTED_CONTENT_TYPE
        assert capture(e, time=-1) == capline.Outcome.REJECTED_TIME
        assert capture(e, time=float("nan")) == capline.Outcome.REJECTED_TIME
        assert capture(e, req=b"x" * 2000) == capline.Outcome.DROPPED_TOO_LARGE
        assert e.count_too_large() == capline.Outcome.DROPPED_TOO_LARGE
        e.set_enabled(False)
        assert capture(e) == capline.Outcome.DROPPED_DISABLED
        e.set_enabled(True)
        e.set_sampling_percentage(0)
        assert capture(e) == capline.Outcome.SAMPLED_OUT
        s = e.stats()
        assert s["sampling_percentage"] == 0
        final = e.close()
    assert final["calls"] == 9
    assert (final["kept"], final["rejected_inference_id"], final["rejected_content_type"]) == (1, 1, 1)
    assert (final["rejected_time"], final["dropped_too_large"], final["dropped_disabled"]) == (2, 2, 1)
    assert final["sampled_out"] == 1 and final["records_written"] == 1
    assert capline.Outcome.KEPT.kept and capline.Outcome.DROPPED_RING_FULL.dropped
    assert capline.Outcome.REJECTED_TIME.rejected and int(capline.Outcome.SAMPLED_OUT) == 1


def test_times_datetime_aware_naive_and_epoch(config, tmp_path):
    t = datetime.datetime(2024, 1, 19, 19, 27, 57, tzinfo=datetime.timezone.utc)
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    with capline.Engine(config) as e:
        for i, when in enumerate([t, t.replace(tzinfo=None), t.astimezone(plus2), t.timestamp(), int(t.timestamp())]):
            assert capture(e, inference_id=f"t{i}", time=when).kept
    times = {r["eventMetadata"]["inferenceId"]: r["eventMetadata"]["inferenceTime"] for r in delivered(tmp_path / "dest")}
    assert set(times.values()) == {"2024-01-19T19:27:57Z"}, times
    assert len(times) == 5


def test_payloads_come_back_byte_exact(config, tmp_path):
    big = os.urandom(4 * 1024 * 1024)
    cases = {
        "invalid-utf8-csv": (b"1,2,\xff\xfe\n", "text/csv"),
        "nul-and-controls": (b"a\x00b\x01\x1f\x7f\n\r\t\"\\", "text/csv"),
        "non-bmp-str": ("emoji \U0001F600 and \u00e9", "application/json"),
        "empty": (b"", "text/csv"),
        "large-binary": (big, "application/x-npy"),
        "bytearray": (bytearray(b"{\"a\": [1, 2]}"), "application/json"),
        "memoryview-slice": (memoryview(b"xx12,34xx")[2:7], "text/csv"),
    }
    config["Engine"]["MaxRecordBytes"] = 16 * 1024 * 1024
    with capline.Engine(config) as e:
        for name, (body, ctype) in cases.items():
            out = capture(e, req=body, resp=body, request_content_type=ctype,
                          response_content_type=ctype, inference_id=name)
            assert out.kept, (name, out)
    got = {r["eventMetadata"]["inferenceId"]: r for r in delivered(tmp_path / "dest")}
    for name, (body, ctype) in cases.items():
        want = body.encode() if isinstance(body, str) else bytes(body)
        r = got[name]["captureData"]
        assert decode(r["endpointInput"]) == want, name
        assert decode(r["endpointOutput"]) == want, name
        assert r["endpointInput"]["observedContentType"] == ctype
    assert got["invalid-utf8-csv"]["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert got["non-bmp-str"]["captureData"]["endpointInput"]["encoding"] == "JSON"
    validate(str(tmp_path / "dest"))


def test_threads_capture_concurrently_with_exact_accounting(config, tmp_path):
    threads, per = 8, 5000
    outcomes = [[] for _ in range(threads)]
    with capline.Engine(config) as e:
        def work(t):
            for i in range(per):
                outcomes[t].append(capture(e, req=f"{t},{i}".encode(), inference_id=f"{t}-{i}"))
        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        final = e.close()
    kept = sum(o.kept for os_ in outcomes for o in os_)
    assert final["calls"] == threads * per
    assert final["kept"] == kept and final["records_written"] == kept
    ids = [r["eventMetadata"]["inferenceId"] for r in delivered(tmp_path / "dest")]
    assert len(ids) == len(set(ids)) == kept
    validate(str(tmp_path / "dest"))


def test_lifecycle_close_twice_and_after_close(config):
    e = capline.Engine(config)
    assert not e.closed
    e.flush(timeout=5)
    assert e.close()["calls"] == 0
    assert e.closed and e.close() is None
    assert capture(e) == capline.Outcome.DROPPED_DISABLED
    with pytest.raises(capline.EngineError):
        e.stats()
    # A second engine on the same spool works once the first is closed.
    with capline.Engine(config) as again:
        assert capture(again).kept
        assert "capline_kept_total 1" in again.prometheus()


def test_a_second_engine_on_a_held_spool_is_refused(config):
    with capline.Engine(config):
        with pytest.raises(capline.EngineError, match="in use"):
            capline.Engine(config)


def test_redaction_from_the_engine_config(tmp_path):
    """Engine.Redaction works from Python as everywhere: JSON fields and CSV
    columns replaced before anything reaches disk, the rest byte for byte;
    a bad rule is a ConfigError naming its field."""
    cfg = make_config(tmp_path, Redaction={"JsonPaths": ["$.customer.ssn"], "CsvColumns": [1]})
    with capline.Engine(cfg) as e:
        assert capture(e, b'{"customer": {"ssn": "123-45-6789", "id": 7}}', b'{"score": 0.5}',
                       request_content_type="application/json",
                       response_content_type="application/json", inference_id="j").kept
        assert capture(e, b"7,ann@example.com,3\n", b"0.5", inference_id="c").kept
        e.flush(timeout=30)
        stats = e.stats()
    assert stats["records_redacted"] == 2 and stats["redaction_unparsable"] == 0, stats
    got = {r["eventMetadata"]["inferenceId"]: r["captureData"] for r in delivered(tmp_path / "dest")}
    assert decode(got["j"]["endpointInput"]) == b'{"customer": {"ssn": "[REDACTED]", "id": 7}}'
    assert decode(got["j"]["endpointOutput"]) == b'{"score": 0.5}'
    assert decode(got["c"]["endpointInput"]) == b"7,[REDACTED],3\n"
    bad = make_config(tmp_path / "bad", Redaction={"JsonPaths": ["customer.ssn"]})
    with pytest.raises(capline.ConfigError, match=r"Engine\.Redaction\.JsonPaths\[0\]"):
        capline.Engine(bad)
