package server

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestProtoCodec: the registered "proto" codec is this package's; it
// round-trips messages below and above gRPC's pooling threshold (the
// latter in a pooled buffer no larger than twice the message), reads a
// message split over several buffers, and refuses what is not protobuf.
func TestProtoCodec(t *testing.T) {
	c, ok := encoding.GetCodecV2("proto").(protoCodec)
	if !ok {
		t.Fatalf("registered proto codec is %T, want protoCodec", encoding.GetCodecV2("proto"))
	}
	for _, size := range []int{0, 100, 40 << 10, 300 << 10} {
		in := &jetwayv1.PublishRequest{Subject: "a.b", Payload: &jetwayv1.PublishRequest_Data{Data: bytes.Repeat([]byte{7}, size)}}
		data, err := c.Marshal(in)
		if err != nil {
			t.Fatalf("marshal %d bytes: %v", size, err)
		}
		want, _ := proto.Marshal(in)
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("marshal %d bytes: %d bytes differ from proto.Marshal's %d", size, len(got), len(want))
		}
		if size > 1<<10 {
			if n, c := len(data), cap(data[0].ReadOnlyData()); n != 1 || c > 2*len(want) {
				t.Errorf("marshal %d bytes: %d buffers, capacity %d for %d bytes", size, n, c, len(want))
			}
		}
		// Split in three to check the gathering read.
		var split mem.BufferSlice
		for i := 0; i < 3; i++ {
			lo, hi := len(want)*i/3, len(want)*(i+1)/3
			split = append(split, mem.SliceBuffer(want[lo:hi]))
		}
		var out jetwayv1.PublishRequest
		if err := c.Unmarshal(split, &out); err != nil || !proto.Equal(in, &out) {
			t.Fatalf("unmarshal %d bytes: %v, equal %v", size, err, proto.Equal(in, &out))
		}
		data.Free()
	}
	if _, err := c.Marshal("not a message"); err == nil || !strings.Contains(err.Error(), "string") {
		t.Errorf("marshal a string: %v", err)
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, new(int)); err == nil {
		t.Error("unmarshal into an int: no error")
	}
}
