package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/config"
)

// loadAuth resolves the authentication mode: the configuration file's
// identities, or none. None is allowed without being asked for only while
// both listeners are on loopback, where only local processes reach them.
func loadAuth(c config.Config, log *slog.Logger) (*auth.Config, error) {
	if c.Auth.ConfigFile != "" {
		ac, err := auth.LoadFile(c.Auth.ConfigFile)
		if err != nil {
			return nil, err
		}
		log.Info("client authentication on", slog.String("config", c.Auth.ConfigFile))
		return ac, nil
	}
	loopback := isLoopback(c.Server.GRPCListen) && isLoopback(c.Server.HTTPListen)
	switch {
	case c.Auth.Mode == "none" && !loopback:
		log.Warn("client authentication is OFF (--auth-mode=none) on a non-loopback listener: anyone who reaches the bridge can do anything")
	case c.Auth.Mode == "none":
		log.Warn("client authentication is off (--auth-mode=none)")
	case !loopback:
		return nil, errors.New("no --auth-config: refusing to listen beyond loopback without client authentication (give --auth-config, or --auth-mode=none to accept the risk)")
	default:
		log.Warn("client authentication is off: no --auth-config, serving on loopback only")
	}
	return nil, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverTLS is the TLS of both listeners, with client certificates
// verified against the client CA when one is configured (optional for the
// client, so that token and API-key clients need none).
func serverTLS(c config.Auth) (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("server: TLS key pair: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("server: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: client CA %s holds no PEM certificate", c.TLSClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// listenerCreds serves TLS on network connections and leaves the
// gateway's in-memory connection (which never leaves the process) in the
// clear, so that one gRPC server with one set of interceptors serves both.
type listenerCreds struct {
	credentials.TransportCredentials
}

func (c listenerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if conn.LocalAddr().Network() == auth.InMemoryNetwork {
		return insecure.NewCredentials().ServerHandshake(conn)
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c listenerCreds) Clone() credentials.TransportCredentials {
	return listenerCreds{c.TransportCredentials.Clone()}
}

// The auth package implements the bridge's authorization and connection
// interfaces.
var (
	_ bridge.Authorizer   = auth.Authorizer{}
	_ bridge.ConnProvider = (*auth.Pool)(nil)
)
