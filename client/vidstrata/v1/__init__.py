"""Generated gRPC stubs of gateway/proto/vidstrata/v1/*.proto (make proto)."""
