"""The ingest job contract between the gateway (which enqueues) and the workers (which run it).

Neither imports the other, so the Celery task name and queue live here, beside the status store.
"""

INGEST_TASK = "vidstrata.ingest_video"  # args: (video_id: str, uri: str, metadata: dict[str, str])
INGEST_QUEUE = "ingest"
