package server

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// bufferPool is gRPC's tiered buffer pool with a tier at every power of two
// from 256 B to 1 MiB. gRPC's default pool jumps from 32 KiB to 1 MiB and
// clears a pooled buffer's whole capacity on every Get, so each batch event
// of 40–90 KiB cleared 1 MiB: 3–5 % of the bridge's CPU in a busy Consume,
// by profile. Here a buffer is at most twice the message.
var bufferPool = func() mem.BufferPool {
	p, err := mem.NewBinaryTieredBufferPool(8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
	if err != nil {
		// Constant exponents that fit every 32- and 64-bit platform.
		return mem.DefaultBufferPool()
	}
	return p
}()

// The server's messages are marshalled into bufferPool's buffers: gRPC's
// own protobuf codec takes them from the default pool whatever the
// server's buffer pool option says. This codec is that one (same name,
// same protobuf calls) with the pool swapped; gRPC has no option for it.
func init() {
	encoding.RegisterCodecV2(protoCodec{pool: bufferPool})
}

type protoCodec struct{ pool mem.BufferPool }

func (protoCodec) Name() string { return "proto" }

func (c protoCodec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("proto: cannot marshal %T: not a protobuf message", v)
	}
	// UseCachedSize reuses the size proto.Size just computed.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c protoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("proto: cannot unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

func messageOf(v any) proto.Message {
	switch m := v.(type) {
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m)
	case protoadapt.MessageV2:
		return m
	}
	return nil
}
