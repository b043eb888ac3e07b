"""The gRPC gateway that product backends talk to (`vidstrata gateway`).

Transport and logic are apart, as in vLLM's entrypoints: `app` wires settings to the service and runs the server
(health, reflection, /metrics, shutdown); `servicer` converts each RPC's messages (`messages`) and calls the service;
`interceptors` hold auth, metrics and the refusal of requests that do not parse. `service.SearchService` holds the
logic and is tested without a network; `query` validates requests, `scoring` rescores candidates exactly, `fusion`
combines the levels, `ingest` decides a submission's modalities and sends Celery tasks, `metrics` is the Prometheus
contract. The API itself is proto/vidstrata/v1/search.proto.
"""
