"""One launcher per component (tritonserver, redis-server, Milvus, worker, gateway).

`vidstrata up`, the benchmarks and the test fixtures all start components through these, so each starts one
way and says "ready" by one check.
"""
