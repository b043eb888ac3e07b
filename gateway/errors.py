"""What can go wrong in a gateway call, in the service's own words; gateway.messages maps each to a gRPC status.

Messages are written for the client: they say what was wrong and what is allowed.
"""


class ServiceError(Exception):
    """Base of the errors the service raises on purpose."""


class InvalidArgument(ServiceError):
    """The request itself is wrong; retrying it unchanged cannot help (INVALID_ARGUMENT)."""


class NotFound(ServiceError):
    """The video named in the request does not exist (NOT_FOUND)."""


class Unavailable(ServiceError):
    """A dependency (Triton, Milvus, Redis) is down or too slow: retry later (UNAVAILABLE)."""


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before the work finished (DEADLINE_EXCEEDED)."""


class FailedPrecondition(ServiceError):
    """The request names something that is not in the state it needs, e.g. a video not yet READY (FAILED_PRECONDITION)."""


class PermissionDenied(ServiceError):
    """The caller's token may not act for what the request names, e.g. another tenant (PERMISSION_DENIED)."""


class AlreadyExists(ServiceError):
    """The request would create what another holds, e.g. a video id of another tenant (ALREADY_EXISTS)."""
