"""Type stubs for the extension module behind `import capline`."""

import datetime
from typing import Any, ClassVar, Mapping, Optional, Union

Body = Union[bytes, bytearray, memoryview, str]

class ConfigError(ValueError):
    """The config broke a rule; the message names the field."""

class EngineError(RuntimeError):
    """The engine could not start, is closed, or its threads stopped."""

class Outcome:
    """What `capture()` did with a call. Every call has exactly one outcome."""

    KEPT: ClassVar["Outcome"]
    SAMPLED_OUT: ClassVar["Outcome"]
    DROPPED_DISABLED: ClassVar["Outcome"]
    DROPPED_WATERMARK: ClassVar["Outcome"]
    DROPPED_SPOOL_FULL: ClassVar["Outcome"]
    DROPPED_RING_FULL: ClassVar["Outcome"]
    DROPPED_TOO_LARGE: ClassVar["Outcome"]
    REJECTED_INFERENCE_ID: ClassVar["Outcome"]
    REJECTED_CONTENT_TYPE: ClassVar["Outcome"]
    REJECTED_TIME: ClassVar["Outcome"]
    @property
    def kept(self) -> bool: ...
    @property
    def dropped(self) -> bool: ...
    @property
    def rejected(self) -> bool: ...
    def __int__(self) -> int: ...

class Engine:
    """A running capture engine; thread-safe, share one between threads."""

    def __init__(self, config: Union[Mapping[str, Any], str]) -> None: ...
    def capture(
        self,
        request: Body,
        response: Body,
        *,
        request_content_type: str,
        response_content_type: str,
        inference_id: Optional[str] = None,
        time: Optional[Union[datetime.datetime, int, float]] = None,
    ) -> Outcome: ...
    def count_too_large(self) -> Outcome: ...
    @property
    def max_record_bytes(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def flush(self, timeout: float = 10.0) -> None: ...
    def stats(self) -> dict[str, Union[int, float, bool]]: ...
    def prometheus(self) -> str: ...
    def set_sampling_percentage(self, percent: float) -> None: ...
    def set_enabled(self, enabled: bool) -> None: ...
    def close(self, timeout: float = 30.0) -> Optional[dict[str, Union[int, float, bool]]]: ...
    def __enter__(self) -> "Engine": ...
    def __exit__(self, *exc: object) -> bool: ...

__version__: str
