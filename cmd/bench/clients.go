package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// publishWindow is the in-flight bound of pipelined publishing, on both
// sides (bridge --publish-window and native max pending).
const publishWindow = 4096

// benchAPIKey is the API key of the bench's one identity (-auth).
const benchAPIKey = "jetway-bench-api-key-0123456789abcdef"

// env is what the scenarios share: the processes and the clients of both
// sides.
type env struct {
	budget budget
	auth   bool

	natsProc   *proc
	bridgeProc *proc
	echoProc   atomic.Pointer[proc] // the gRPC echo process, while one runs
	bridge     bridgeSpec

	// Native side (and setup of both sides: streams and consumers).
	nc        *nats.Conn
	js        jetstream.JetStream // synchronous API and setup
	jsAsync   jetstream.JetStream // PublishAsync with max pending publishWindow
	asyncErrs atomic.Int64        // async publish failures seen by jsAsync

	// Bridge side.
	conn    *grpc.ClientConn
	msgs    jetwayv1.MessageServiceClient
	http    *http.Client
	baseURL string

	// Prefilled streams for the consume scenarios, by payload size.
	filled map[int]filledStream
}

type filledStream struct {
	name  string
	count int
}

// apiKeyCreds sends the bench's API key on every call. Loopback only, so
// no transport security is required.
type apiKeyCreds struct{ key string }

func (c apiKeyCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "ApiKey " + c.key}, nil
}

func (apiKeyCreds) RequireTransportSecurity() bool { return false }

// dialOptions are the gRPC client options of every bridge (and echo)
// connection.
func (e *env) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if e.auth {
		opts = append(opts, grpc.WithPerRPCCredentials(apiKeyCreds{benchAPIKey}))
	}
	return opts
}

// dialBridge opens a new gRPC connection to the bridge.
func (e *env) dialBridge() (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(e.bridge.grpcAddr, e.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("dial bridge: %w", err)
	}
	return conn, nil
}

// setAuthHeader adds the API key to a REST request when -auth is on.
func (e *env) setAuthHeader(h http.Header) {
	if e.auth {
		h.Set("Authorization", "ApiKey "+benchAPIKey)
	}
}

// writeAuthConfig writes an auth configuration with one API-key identity
// that may do everything, with limits high enough not to throttle the
// bench (the defaults are 1000 requests/s and 100 streams).
func writeAuthConfig(dir string) (string, error) {
	all := perm.Set{Allow: []string{">"}}
	f := auth.File{Identities: []auth.IdentityConfig{{
		Name:         "bench",
		APIKeyHashes: []string{auth.HashAPIKey(benchAPIKey)},
		Grant: auth.Grant{
			Publish: &all,
			Consume: &auth.ConsumeGrant{Streams: []string{">"}, Subjects: &all},
			Admin:   &auth.AdminGrant{Write: true},
			Limits:  auth.Limits{ConcurrentStreams: 1 << 20, RequestsPerSecond: 1e9, Burst: 1 << 30},
		},
	}}}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", fmt.Errorf("auth config: %w", err)
	}
	path := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("auth config: %w", err)
	}
	return path, nil
}

// connectClients opens the native NATS connection and the bridge clients.
func (e *env) connectClients(natsURL string) error {
	nc, err := nats.Connect(natsURL, nats.Name("jetway-bench"))
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	e.jsAsync, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(publishWindow),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { e.asyncErrs.Add(1) }))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if e.conn, err = e.dialBridge(); err != nil {
		return err
	}
	e.msgs = jetwayv1.NewMessageServiceClient(e.conn)
	e.http = &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxConnsPerHost:     restConns,
		MaxIdleConnsPerHost: restConns,
		MaxIdleConns:        restConns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
	e.baseURL = "http://" + e.bridge.httpAddr
	e.filled = map[int]filledStream{}
	return nil
}

// close closes the clients.
func (e *env) close() {
	if e.conn != nil {
		_ = e.conn.Close()
	}
	if e.http != nil {
		e.http.CloseIdleConnections()
	}
	if e.nc != nil {
		e.nc.Close()
	}
}

// restartBridge stops the bridge process and starts a fresh one on the
// same ports (scenario 8 measures a bridge that served nothing before).
func (e *env) restartBridge(ctx context.Context) error {
	if err := e.bridgeProc.stop(); err != nil {
		return fmt.Errorf("restart bridge: %w", err)
	}
	p, err := startBridge(ctx, e.bridge)
	if err != nil {
		return fmt.Errorf("restart bridge: %w", err)
	}
	e.bridgeProc = p
	return nil
}

// healthy reports an error when a child process has died.
func (e *env) healthy() error {
	return errors.Join(e.natsProc.alive(), e.bridgeProc.alive())
}

// createStream creates a fresh file-backed stream capturing subject.>.
func (e *env) createStream(ctx context.Context, name, subject string) error {
	_ = e.js.DeleteStream(ctx, name) // leftovers of an interrupted run
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject + ".>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}

// deleteStream removes a stream, with its own bound so that it also runs
// after the run's context ended.
func (e *env) deleteStream(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.js.DeleteStream(ctx, name)
}

// createConsumer creates a pull consumer.
func (e *env) createConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := e.js.CreateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}

// deleteConsumer removes a consumer, with its own bound.
func (e *env) deleteConsumer(stream, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.js.DeleteConsumer(ctx, stream, name)
}
