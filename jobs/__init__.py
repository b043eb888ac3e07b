"""The ingest contract between the gateway (which enqueues) and the workers (which run it).

Neither service imports the other, so what both must agree on lives here: the Celery task name, queue and
payload (`jobs.contract`), and the per-video ingest status in Redis (`jobs.status`).
"""
