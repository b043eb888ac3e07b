"""The two ways an ingest can fail, so the task knows whether to retry without knowing who raised it."""


class BadVideo(ValueError):
    """The submitted video can never be ingested as it is (missing, too large, not a video, corrupt):
    fail at once with this message as the reason, and retry nothing."""


class SourceUnavailable(RuntimeError):
    """The video's source cannot be read right now (connection refused, timeout, server error): retry later."""


class IngestCancelled(RuntimeError):
    """The video's status record is gone or belongs to a newer submission: stop, and write nothing."""
