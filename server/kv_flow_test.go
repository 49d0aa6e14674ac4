package server_test

// A watch whose client stops reading slows its watch and nothing else:
// JetStream's flow control stops delivering to the watch's ordered
// consumer, so what the bridge holds stays bounded (measured as what the
// consumer has delivered ahead of what the client has read, from
// JetStream's consumer info), and once the client reads again it gets
// every update, in revision order, none missing. Over gRPC, SSE and
// NDJSON.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/gateway"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

const (
	// kvFlowRcvBuf is the raw HTTP client's socket receive buffer.
	kvFlowRcvBuf    = 256 << 10
	kvFlowValues    = 2000
	kvFlowValueSize = 32 << 10
	// kvFlowFC is JetStream's flow-control bound of a push consumer
	// (nats-server's JsFlowControlMaxPending): it stops sending once this
	// much is delivered and not yet taken by the client library.
	kvFlowFC = 32 << 20
)

// kvFlowBound is the most a stalled watch may have delivered ahead of its
// client, in entries: the bridge's one in hand, nats.go's watcher channel
// (256), JetStream's flow-control bytes, and the transport's buffers
// (gRPC: its largest stream window, 16 MiB; REST: the gateway's
// StreamBufferBound, the client's socket buffer, doubled by Linux, and
// its bufio reader). Below the 2000
// entries put, so that a watch without flow control fails.
func kvFlowBound(transport string) int {
	transportBytes := gateway.StreamBufferBound + 2*kvFlowRcvBuf + 64<<10
	if transport == "grpc" {
		transportBytes = 16 << 20
	}
	return 1 + 256 + (kvFlowFC+transportBytes)/kvFlowValueSize + 4
}

// kvFlowReader reads a watch's entries' revisions.
type kvFlowReader interface {
	next(t *testing.T) uint64 // the next entry's revision, skipping other events
}

type kvFlowGRPC struct {
	st jetwayv1.KVService_WatchBucketClient
}

func (r kvFlowGRPC) next(t *testing.T) uint64 {
	t.Helper()
	for {
		ev, err := r.st.Recv()
		if err != nil {
			t.Fatalf("gRPC watch: %v", err)
		}
		if e := ev.GetEntry(); e != nil {
			return e.GetRevision()
		}
	}
}

// kvFlowHTTP is a raw HTTP/1.1 watch client with a fixed socket receive
// buffer (kvFlowRcvBuf, which kvFlowBound counts; fixed, Linux does not
// grow it). Not restwindow_test's 4 KiB: under the loopback MSS (64 KiB)
// the window never opens far enough to send, and TCP's zero-window
// probes, backed off during the stall, then pace 43 KiB events to about
// one a second (the client's doing, not the bridge's).
type kvFlowHTTP struct {
	conn *net.TCPConn
	body *bufio.Reader
	sse  bool
}

func openKVFlowHTTP(t *testing.T, b *jetwaytest.Bridge, bucket string, sse bool) *kvFlowHTTP {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Server.HTTPAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.TCPConn)
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetReadBuffer(kvFlowRcvBuf); err != nil {
		t.Fatal(err)
	}
	accept := "application/json"
	if sse {
		accept = gateway.MIMEEventStream
	}
	path := "/v1/kv/" + bucket + "/watch"
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: %s\r\n\r\n", path, accept); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	return &kvFlowHTTP{conn: conn, body: bufio.NewReaderSize(resp.Body, 64<<10), sse: sse}
}

func (r *kvFlowHTTP) next(t *testing.T) uint64 {
	t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		line, err := r.body.ReadString('\n')
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if r.sse {
			if id, ok := strings.CutPrefix(strings.TrimSpace(line), "id: "); ok {
				rev, err := strconv.ParseUint(id, 10, 64)
				if err != nil {
					t.Fatalf("SSE id %q", id)
				}
				return rev
			}
			continue
		}
		var ev struct {
			Result struct {
				Entry *struct {
					Revision string `json:"revision"`
				} `json:"entry"`
			} `json:"result"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("NDJSON line %.200q: %v", line, err)
		}
		if ev.Error != nil {
			t.Fatalf("NDJSON error: %s", ev.Error)
		}
		if ev.Result.Entry != nil {
			rev, err := strconv.ParseUint(ev.Result.Entry.Revision, 10, 64)
			if err != nil {
				t.Fatalf("revision %q", ev.Result.Entry.Revision)
			}
			return rev
		}
	}
}

// kvFlowDelivered is the last stream sequence the bucket's one consumer
// (the watch's ordered consumer) has delivered.
func kvFlowDelivered(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	l := s.ListConsumers(ctx)
	var infos []*jetstream.ConsumerInfo
	for ci := range l.Info() {
		infos = append(infos, ci)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 {
		t.Fatalf("%d consumers on KV_%s, want the watch's one", len(infos), bucket)
	}
	return infos[0].Delivered.Stream
}

func TestKVWatchFlowControl(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 4*time.Minute)
	c := jetwayv1.NewKVServiceClient(b.Conn)
	for _, transport := range []string{"grpc", "sse", "ndjson"} {
		t.Run(transport, func(t *testing.T) {
			bucket := "FLOW" + transport
			kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.MemoryStorage})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(ctx, "first", []byte("1")); err != nil {
				t.Fatal(err)
			}
			var r kvFlowReader
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			switch transport {
			case "grpc":
				st, err := c.WatchBucket(wctx, &jetwayv1.WatchBucketRequest{Bucket: bucket})
				if err != nil {
					t.Fatal(err)
				}
				r = kvFlowGRPC{st}
			default:
				r = openKVFlowHTTP(t, b, bucket, transport == "sse")
			}
			if rev := r.next(t); rev != 1 {
				t.Fatalf("first entry: revision %d", rev)
			}
			read := uint64(1)

			// The client stops reading; a native client puts 2000 values
			// of 32 KiB (62.5 MiB), each under its own key, so that every
			// revision stays in the bucket.
			value := []byte(strings.Repeat("v", kvFlowValueSize))
			acks := make([]jetstream.PubAckFuture, 0, kvFlowValues)
			for i := range kvFlowValues {
				f, err := b.JS.PublishAsync(fmt.Sprintf("$KV.%s.k.%d", bucket, i), value)
				if err != nil {
					t.Fatal(err)
				}
				acks = append(acks, f)
			}
			for _, f := range acks {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					t.Fatal(err)
				case <-ctx.Done():
					t.Fatal("publish acks not in time")
				}
			}
			// Steady once the consumer's delivered count has not moved for
			// a second.
			last, since := uint64(0), time.Now()
			deadline := time.Now().Add(30 * time.Second)
			for {
				n := kvFlowDelivered(t, ctx, b.JS, bucket)
				if n != last {
					last, since = n, time.Now()
				} else if time.Since(since) >= time.Second {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("delivered still moving after 30s: %d", n)
				}
				time.Sleep(100 * time.Millisecond)
			}
			ahead := int(last - read)
			bound := kvFlowBound(transport)
			t.Logf("%s: stalled watch: %d of %d entries (%.1f MiB) delivered ahead of the client, bound %d",
				transport, ahead, kvFlowValues, float64(ahead)*kvFlowValueSize/(1<<20), bound)
			if ahead > bound {
				t.Errorf("stalled watch: %d entries delivered ahead of the client, bound %d", ahead, bound)
			}
			if last >= kvFlowValues+1 {
				t.Errorf("stalled watch: JetStream delivered all %d entries: no flow control", last)
			}

			// Reading again: every revision, in order, none missing.
			start := time.Now()
			for want := uint64(2); want <= kvFlowValues+1; want++ {
				if rev := r.next(t); rev != want {
					t.Fatalf("after %d entries: revision %d, want %d", read, rev, want)
				}
				read = want
			}
			t.Logf("%s: the remaining %d entries read in %v", transport, kvFlowValues, time.Since(start).Round(time.Millisecond))
			cancel()
			if err := b.JS.DeleteKeyValue(ctx, bucket); err != nil {
				t.Fatal(err)
			}
		})
	}
}
