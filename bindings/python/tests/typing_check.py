"""Type-checked with `mypy --strict` by the test script: the stubs
(`_capline.pyi`, `py.typed`) give editors and mypy the whole API."""

import datetime

import capline
import capline.asgi
import capline.wsgi


def use(engine: capline.Engine) -> bool:
    outcome: capline.Outcome = engine.capture(
        b"1,2",
        memoryview(b"0.5"),
        request_content_type="text/csv",
        response_content_type="text/csv",
        inference_id="id-1",
        time=datetime.datetime.now(datetime.timezone.utc),
    )
    stats = engine.stats()
    kept = stats["kept"]
    engine.flush(timeout=1.0)
    engine.set_sampling_percentage(12.5)
    engine.set_enabled(True)
    return outcome.kept and kept >= 0 and engine.max_record_bytes > 0


def build(config: dict[str, object]) -> capline.Engine:
    try:
        return capline.Engine(config)
    except capline.ConfigError as e:
        raise SystemExit(str(e))


middleware = capline.asgi.CaptureMiddleware
wsgi_middleware = capline.wsgi.CaptureMiddleware
