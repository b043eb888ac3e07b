"""The ingest job contract between the gateway (which enqueues) and the workers (which run it).

Neither imports the other, so the Celery task name, its queue and its payload live here, beside the status store.
The payload is typed and versioned: a worker reads every version a gateway may still have queued (a rolling
upgrade), and refuses a newer one with a clear reason instead of guessing. Version 2 adds the tenant and the model
versions to index under; a payload that needs neither (the default tenant, the worker's own models) is still sent
as version 1, so workers of the previous release keep reading what a new gateway queues during a rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidstrata.spec.channels import TIMED_TEXT_CHANNELS

INGEST_TASK = "vidstrata.ingest_video"
INGEST_QUEUE = "ingest"
# A re-index (jobs.reindex): args [IngestPayload message (versions set), job id, side ("target" or "source": the
# generation to write)], on INGEST_QUEUE: the same workers.
REINDEX_TASK = "vidstrata.reindex_video"
# The timed-text channels a submission may ask for by name (spec.channels): SubmitVideo's `modalities`.
MODALITIES: tuple[str, ...] = tuple(c.channel.value for c in TIMED_TEXT_CHANNELS)
PAYLOAD_VERSION = 2
READS_VERSIONS = (1, 2)
DEFAULT_TENANT = ""  # index.schema.DEFAULT_TENANT: the single-tenant deployment (jobs does not import index)


class PayloadError(ValueError):
    """A task message this worker cannot read (a newer payload version, or a malformed one)."""


@dataclass(frozen=True)
class IngestPayload:
    """What one ingest task carries.

    modalities: the timed-text channels (MODALITIES) this submission wants; None leaves it to the deployment's
    switches. The worker extracts only what its deployment has switched on either way.
    tenant: whose video it is (stored on every row and in the status record; "" : the default tenant).
    visual_model, text_model: the model versions (EncoderInfo.visual_model, .text_model) the video must be indexed
    under, for a re-index; None: the versions the worker serves. A worker that serves others refuses the task.
    """

    video_id: str
    uri: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    modalities: tuple[str, ...] | None = None
    tenant: str = DEFAULT_TENANT
    visual_model: str | None = None
    text_model: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The JSON-serialisable form sent as the task's only argument: version 1 when it carries nothing of
        version 2's (see the module docstring)."""
        message: dict[str, Any] = {
            "version": 1, "video_id": self.video_id, "uri": self.uri, "metadata": dict(self.metadata),
            "modalities": list(self.modalities) if self.modalities is not None else None}
        more = {"tenant": self.tenant, "visual_model": self.visual_model, "text_model": self.text_model}
        if self.tenant != DEFAULT_TENANT or self.visual_model is not None or self.text_model is not None:
            message |= {"version": PAYLOAD_VERSION, **more}
        return message

    @classmethod
    def from_task_args(cls, args: Sequence[Any]) -> IngestPayload:
        """Read a task's positional arguments: `[message]` (version 1), or the version-0 list
        `[video_id, uri, metadata(, modalities)]` that gateways before the typed payload sent. PayloadError else."""
        if len(args) == 1 and isinstance(args[0], Mapping):
            message = args[0]
            version = message.get("version")
            if version not in READS_VERSIONS:
                raise PayloadError(f"ingest payload version {version!r} is not one this worker reads "
                                   f"(it reads {', '.join(map(str, READS_VERSIONS))}): upgrade the worker")
            modalities = message.get("modalities")
            return cls(message["video_id"], message["uri"], dict(message.get("metadata") or {}),
                       tuple(modalities) if modalities is not None else None,
                       tenant=str(message.get("tenant") or DEFAULT_TENANT),
                       visual_model=message.get("visual_model"), text_model=message.get("text_model"))
        if 3 <= len(args) <= 4 and all(isinstance(a, str) for a in args[:2]) and isinstance(args[2], Mapping):
            modalities = args[3] if len(args) == 4 else None
            return cls(args[0], args[1], dict(args[2]), tuple(modalities) if modalities is not None else None)
        raise PayloadError(f"not an ingest payload: {len(args)} arguments")
