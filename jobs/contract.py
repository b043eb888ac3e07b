"""The ingest job contract between the gateway (which enqueues) and the workers (which run it).

Neither imports the other, so the Celery task name and queue live here, beside the status store.
"""

# args: (video_id: str, uri: str, metadata: dict[str, str][, modalities: list[str]]): the optional fourth names the
# timed-text modalities this submission wants (MODALITIES); absent means all the worker's deployment has on
INGEST_TASK = "vidstrata.ingest_video"
MODALITIES = ("speech", "screen_text")
INGEST_QUEUE = "ingest"
