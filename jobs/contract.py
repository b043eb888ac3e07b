"""The ingest job contract between the gateway (which enqueues) and the workers (which run it).

Neither imports the other, so the Celery task name, its queue and its payload live here, beside the status store.
The payload is typed and versioned: a worker reads every version a gateway may still have queued (a rolling
upgrade), and refuses a newer one with a clear reason instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidstrata.spec.channels import TIMED_TEXT_CHANNELS

INGEST_TASK = "vidstrata.ingest_video"
INGEST_QUEUE = "ingest"
# The timed-text channels a submission may ask for by name (spec.channels): SubmitVideo's `modalities`.
MODALITIES: tuple[str, ...] = tuple(c.channel.value for c in TIMED_TEXT_CHANNELS)
PAYLOAD_VERSION = 1


class PayloadError(ValueError):
    """A task message this worker cannot read (a newer payload version, or a malformed one)."""


@dataclass(frozen=True)
class IngestPayload:
    """What one ingest task carries.

    modalities: the timed-text channels (MODALITIES) this submission wants; None leaves it to the deployment's
    switches. The worker extracts only what its deployment has switched on either way.
    """

    video_id: str
    uri: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    modalities: tuple[str, ...] | None = None

    def to_message(self) -> dict[str, Any]:
        """The JSON-serialisable form sent as the task's only argument."""
        return {"version": PAYLOAD_VERSION, "video_id": self.video_id, "uri": self.uri,
                "metadata": dict(self.metadata),
                "modalities": list(self.modalities) if self.modalities is not None else None}

    @classmethod
    def from_task_args(cls, args: Sequence[Any]) -> IngestPayload:
        """Read a task's positional arguments: `[message]` (version 1), or the version-0 list
        `[video_id, uri, metadata(, modalities)]` that gateways before the typed payload sent. PayloadError else."""
        if len(args) == 1 and isinstance(args[0], Mapping):
            message = args[0]
            version = message.get("version")
            if version != PAYLOAD_VERSION:
                raise PayloadError(f"ingest payload version {version!r} is not one this worker reads "
                                   f"(it reads {PAYLOAD_VERSION}): upgrade the worker")
            modalities = message.get("modalities")
            return cls(message["video_id"], message["uri"], dict(message.get("metadata") or {}),
                       tuple(modalities) if modalities is not None else None)
        if 3 <= len(args) <= 4 and all(isinstance(a, str) for a in args[:2]) and isinstance(args[2], Mapping):
            modalities = args[3] if len(args) == 4 else None
            return cls(args[0], args[1], dict(args[2]), tuple(modalities) if modalities is not None else None)
        raise PayloadError(f"not an ingest payload: {len(args)} arguments")
