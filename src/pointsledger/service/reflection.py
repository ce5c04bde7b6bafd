"""Server reflection, as both grpc.reflection.v1 (what current tools ask first) and v1alpha.

grpcio-reflection serves only v1alpha. v1 is the same protocol under another
package name: the same messages, field for field. So the v1alpha servicer
answers v1 calls too, and the v1 file (the v1alpha descriptor renamed) is added
to the descriptor pool so that reflection can describe itself under both names.
"""

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = V1_PACKAGE + ".ServerReflection"
V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME


def _add_v1_descriptor(pool=None):
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)
        return  # added already (another server in this process), or a v1 module is installed
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = V1_PACKAGE
    old_prefix, new_prefix = f".{V1ALPHA_PACKAGE}.", f".{V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = new_prefix + field.type_name[len(old_prefix):]
    for service in proto.service:
        for method in service.method:
            method.input_type = new_prefix + method.input_type[len(old_prefix):]
            method.output_type = new_prefix + method.output_type[len(old_prefix):]
    pool.AddSerializedFile(proto.SerializeToString())


def enable_server_reflection(service_names, server):
    """Serve reflection for service_names (the reflection services are added) on an aio server."""
    _add_v1_descriptor()
    names = tuple(service_names) + (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME, {"ServerReflectionInfo": handler}),))
