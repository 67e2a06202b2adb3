"""capline: SageMaker Data Capture in the process of a Python model server.

    import capline

    engine = capline.Engine({
        "EndpointName": "churn",
        "DataCaptureConfig": {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://bucket/datacapture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        },
        "Engine": {"SpoolDir": "/var/lib/capline"},
    })
    outcome = engine.capture(b"1,2,3", b"0.25", request_content_type="text/csv",
                             response_content_type="text/csv")

`capline.asgi.CaptureMiddleware` and `capline.wsgi.CaptureMiddleware` capture
what a FastAPI, Starlette, Flask or Django app serves, in one line each.
docs/PYTHON.md has the whole guide.
"""

from ._capline import ConfigError, Engine, EngineError, Outcome, __version__

__all__ = ["ConfigError", "Engine", "EngineError", "Outcome", "__version__"]
