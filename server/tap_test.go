package server_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestGRPCRefusedBeforeMessage: a gRPC call without credentials is refused
// (UNAUTHENTICATED) from its headers, while its request message is still
// arriving: the bridge does not read an unauthenticated client's messages
// (up to 12 × the max payload each, 1024 calls a connection) into memory.
func TestGRPCRefusedBeforeMessage(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	conn, err := net.DialTimeout("tcp", e.b.Server.GRPCAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/jetway.v1.MessageService/Publish"},
		{":authority", "bridge"}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// A message announced at 2 MB, of which only the first bytes come.
	prefix := make([]byte, 5, 5+1000)
	binary.BigEndian.PutUint32(prefix[1:], 2<<20)
	if err := fr.WriteData(1, false, append(prefix, make([]byte, 1000)...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no answer while the message was incomplete (%v after %v): the bridge waits for an unauthenticated message", err, time.Since(start))
		}
		hf, ok := f.(*http2.HeadersFrame)
		if !ok || hf.StreamID != 1 {
			continue
		}
		fields, err := dec.DecodeFull(hf.HeaderBlockFragment())
		if err != nil {
			t.Fatal(err)
		}
		for _, fld := range fields {
			if fld.Name == "grpc-status" {
				if fld.Value != "16" {
					t.Fatalf("grpc-status %s, want 16 (UNAUTHENTICATED)", fld.Value)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("refused after %v", d)
				}
				return
			}
		}
	}
}
