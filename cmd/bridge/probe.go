package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jetway-dev/jetway/config"
)

// errUnhealthy is a probe that reached no healthy answer: the process
// exits 1, what container health checks read as unhealthy (2 is reserved
// there).
var errUnhealthy = errors.New("probe: unhealthy")

// probeTimeout bounds one probe: the connection and the answer.
const probeTimeout = 3 * time.Second

// runProbe asks the bridge's own HTTP listener for path (/readyz when
// none is given, or /healthz) and returns nil only on 200, for container
// health checks in an image that has no shell and no curl:
//
//	bridge probe [/readyz|/healthz]
//
// The listener is the one the bridge would open with the same JETWAY_*
// environment (--http-listen, and HTTPS with --tls-cert): an unspecified
// host (0.0.0.0, ::) is asked on loopback. Over HTTPS the listener must
// present the certificate of --tls-cert. Any failure wraps errUnhealthy.
func runProbe(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	path := "/readyz"
	switch {
	case len(args) > 1:
		return fmt.Errorf("%w: want at most one argument, the path (/readyz or /healthz)", errUnhealthy)
	case len(args) == 1 && (args[0] == "/readyz" || args[0] == "/healthz"):
		path = args[0]
	case len(args) == 1:
		return fmt.Errorf("%w: path %q: want /readyz or /healthz", errUnhealthy, args[0])
	}
	cfg, err := config.Parse(nil, getenv, io.Discard)
	if err != nil {
		return fmt.Errorf("%w: %w", errUnhealthy, err)
	}
	host, port, err := net.SplitHostPort(cfg.Server.HTTPListen)
	if err != nil {
		return fmt.Errorf("%w: --http-listen %q: %w", errUnhealthy, cfg.Server.HTTPListen, err)
	}
	client := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{}}
	scheme := "http"
	if cfg.Auth.TLSCert != "" {
		tr, err := pinnedTransport(cfg.Auth.TLSCert, cfg.Auth.TLSKey)
		if err != nil {
			return fmt.Errorf("%w: %w", errUnhealthy, err)
		}
		client.Transport, scheme = tr, "https"
	}
	defer client.CloseIdleConnections()
	url := scheme + "://" + net.JoinHostPort(probeHost(host), port) + path
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errUnhealthy, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errUnhealthy, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %s %s", errUnhealthy, url, resp.Status, bytes.TrimSpace(body))
	}
	_, err = fmt.Fprintf(stdout, "%s: %s\n", url, bytes.TrimSpace(body))
	return err
}

// probeHost is the host to ask for a listener on host: loopback for an
// unspecified address (the listener is on every interface).
func probeHost(host string) string {
	switch ip := net.ParseIP(host); {
	case host == "":
		return "127.0.0.1"
	case ip == nil || !ip.IsUnspecified():
		return host
	case ip.To4() != nil:
		return "127.0.0.1"
	default:
		return "::1"
	}
}

// pinnedTransport trusts exactly the certificate the bridge serves: the
// probe asks its own listener, by an address the certificate need not
// name.
func pinnedTransport(certFile, keyFile string) (*http.Transport, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	want := pair.Certificate[0]
	return &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's: the leaf must be the
		// served certificate, byte for byte.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return errors.New("the listener's certificate is not --tls-cert's")
			}
			return nil
		},
	}}, nil
}
