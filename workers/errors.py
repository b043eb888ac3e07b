"""The two ways an ingest can fail, so the task knows whether to retry without knowing who raised it.

`BadVideo` (permanent) is the decoder's own error, defined with it in `vidstrata.media.video` and re-exported here.
"""

from vidstrata.media.video import BadVideo

__all__ = ["BadVideo", "IngestCancelled", "ModelMismatch", "SourceUnavailable"]


class SourceUnavailable(RuntimeError):
    """The video's source cannot be read right now (connection refused, timeout, server error, a DNS resolver that
    cannot answer): retry later. A host that does not exist at all (NXDOMAIN) is `BadVideo`, not this.

    Messages name the source redacted (spec.redaction): they become status fields and log lines."""


class ModelMismatch(RuntimeError):
    """The task asks for model versions (IngestPayload.visual_model, .text_model) this worker does not serve:
    permanent here; the rows it would write would be of another version than the task wants."""


class IngestCancelled(RuntimeError):
    """The video's status record is gone or belongs to a newer submission: stop, and write nothing."""
