#!/usr/bin/python3
"""A Python grpcio client of Jetway.

Creates a stream, publishes to it, creates a durable consumer, Fetches a
batch from it, acks the batch by token (confirmed), then makes a call the
bridge refuses and decodes the refusal's google.rpc.Status details
(ErrorInfo) from the grpc-status-details-bin trailer with the protobuf
runtime.

Environment:
  JETWAY_GRPC_ADDR  the bridge's gRPC address (default 127.0.0.1:9090)
  JETWAY_API_KEY    an API key, sent as "authorization: ApiKey <key>"
                    (unset: no credentials, for a bridge without auth)
  JETWAY_STREAM     the stream to use (default EXAMPLE_PYTHON; its subjects
                    are <stream in lower case>.>)
  JETWAY_COUNT      how many messages to publish and fetch (default 5)
  JETWAY_PY_GEN     where generate.sh wrote the stubs (default ./gen)
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("JETWAY_PY_GEN") or os.path.join(HERE, "gen"))

import grpc  # noqa: E402  (python3-grpcio)
from google.protobuf import duration_pb2, json_format, struct_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402  (generated)
from jetway.v1 import (  # noqa: E402  (generated)
    admin_pb2,
    admin_pb2_grpc,
    message_pb2,
    message_pb2_grpc,
    types_pb2,
)

ADDR = os.environ.get("JETWAY_GRPC_ADDR", "127.0.0.1:9090")
API_KEY = os.environ.get("JETWAY_API_KEY", "")
STREAM = os.environ.get("JETWAY_STREAM", "EXAMPLE_PYTHON")
COUNT = int(os.environ.get("JETWAY_COUNT", "5"))
PREFIX = STREAM.lower()
DURABLE = "worker"
TIMEOUT = 10  # seconds, every call's deadline

METADATA = (("authorization", "ApiKey " + API_KEY),) if API_KEY else ()


def describe(err):
    """The lines describing a refused call: its code and message, then the
    details of its grpc-status-details-bin trailer."""
    lines = ["refused: %s %s" % (err.code().name, err.details())]
    raw = None
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            raw = value
    if raw is None:
        return lines + ["  (no grpc-status-details-bin trailer)"]
    st = status_pb2.Status.FromString(raw)
    for detail in st.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            lines.append("  ErrorInfo reason=%s domain=%s" % (info.reason, info.domain))
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for v in bad.field_violations:
                lines.append("  BadRequest field=%s: %s" % (v.field, v.description))
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            lines.append("  RetryInfo retry_delay=%.3fs" % retry.retry_delay.ToTimedelta().total_seconds())
        else:
            lines.append("  detail %s (not decoded)" % detail.type_url)
    return lines


def main():
    with grpc.insecure_channel(ADDR) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        messages = message_pb2_grpc.MessageServiceStub(channel)

        created = admin.CreateStream(
            admin_pb2.CreateStreamRequest(config=types_pb2.StreamConfig(name=STREAM, subjects=[PREFIX + ".>"])),
            metadata=METADATA, timeout=TIMEOUT)
        print("created stream %s" % created.stream.config.name)

        for i in range(1, COUNT + 1):
            payload = struct_pb2.Value()
            payload.struct_value.update({"n": i, "from": "python"})
            res = messages.Publish(
                message_pb2.PublishRequest(subject=PREFIX + ".new", json=payload, msg_id="%s-%d" % (PREFIX, i)),
                metadata=METADATA, timeout=TIMEOUT)
            print("published seq=%d duplicate=%s" % (res.sequence, str(res.duplicate).lower()))

        admin.CreateConsumer(
            admin_pb2.CreateConsumerRequest(stream=STREAM, config=types_pb2.ConsumerConfig(
                name=DURABLE, ack_policy=types_pb2.ACK_POLICY_EXPLICIT,
                ack_wait=duration_pb2.Duration(seconds=30))),
            metadata=METADATA, timeout=TIMEOUT)
        print("created consumer %s" % DURABLE)

        # Fetch returns as soon as messages are there (or after wait):
        # fetch until COUNT arrived.
        tokens = []
        while len(tokens) < COUNT:
            batch = messages.Fetch(
                message_pb2.FetchRequest(stream=STREAM, consumer=DURABLE, batch=COUNT - len(tokens),
                                         wait=duration_pb2.Duration(seconds=5),
                                         format=message_pb2.PAYLOAD_FORMAT_JSON),
                metadata=METADATA, timeout=TIMEOUT)
            if not batch.messages:
                raise RuntimeError("fetch: no message within the wait, %d of %d fetched" % (len(tokens), COUNT))
            for m in batch.messages:
                body = json.dumps(json_format.MessageToDict(m.json), sort_keys=True)
                print("received seq=%d subject=%s json=%s" % (m.stream_sequence, m.subject, body))
                tokens.append(m.ack_token)

        acked = messages.Ack(
            message_pb2.AckRequest(sync=True, operations=[
                message_pb2.AckOperation(token=t, kind=message_pb2.ACK_KIND_ACK) for t in tokens]),
            metadata=METADATA, timeout=TIMEOUT)
        failed = [r for r in acked.results if r.HasField("error")]
        if failed:
            raise RuntimeError("ack failed: %s" % failed)
        print("acked %d" % len(tokens))

        # No stream captures this subject: NOT_FOUND, reason NO_STREAM_FOR_SUBJECT.
        try:
            messages.Publish(message_pb2.PublishRequest(subject="nowhere.example", text="lost"),
                             metadata=METADATA, timeout=TIMEOUT)
            raise RuntimeError("publish to nowhere.example succeeded")
        except grpc.RpcError as err:
            for line in describe(err):
                print(line)
        print("done")


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as err:
        for line in describe(err):
            print("error: " + line, file=sys.stderr)
        sys.exit(1)
