"""The protocol's generated messages, copied from tritonclient 2.73's grpc package (BSD-3-Clause,
Copyright NVIDIA CORPORATION): ``grpc_service.proto`` and ``model_config.proto`` compiled by protoc.

Only the import of ``model_config_pb2`` in ``service_pb2`` is changed, to this package. The service
imports these rather than tritonclient, whose grpc client would bring tritonclient, rapidjson,
ml-dtypes and packaging into the image for two message modules. tests/service/test_grpc.py pins
them to tritonclient's: the same serialized descriptors, so the messages are the same.
"""
