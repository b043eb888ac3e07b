"""Media in and out: the one video decoder (PyAV: streams, rotation, timestamps, bounds) and the sample, photo and
synthetic media that `vidstrata up`, training, the tests and the benchmarks share. Imports only spec and av."""
