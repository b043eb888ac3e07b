"""Exceptions of the status store, so callers map them to retries or gRPC codes without knowing redis."""


class StatusError(RuntimeError):
    """Redis failed in a way the caller cannot fix by changing its input."""


class StatusUnavailable(StatusError):
    """Redis cannot be reached or timed out: retry later, or answer gRPC UNAVAILABLE."""
