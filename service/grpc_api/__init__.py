"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService``.

``server`` runs the service and guards every RPC as HTTP's middleware does; ``tensors`` checks
ModelInfer's tensors with the HTTP v2 API's checks and messages; ``proto`` holds the protocol's
generated messages (from tritonclient's grpc package, so the service needs only grpcio and protobuf).
"""
