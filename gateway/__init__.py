"""The gRPC gateway that product backends talk to (`vidstrata gateway`).

Transport and logic are apart: `server` converts gRPC messages and hosts auth, metrics, health and
reflection; `service.SearchService` holds the logic and is tested without a network; `query` validates
requests, `scoring` rescores candidates exactly, `fusion` combines the levels, `ingest` sends Celery tasks.
The API itself is proto/vidstrata/v1/search.proto.
"""
