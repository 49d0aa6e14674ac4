package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProbe runs the bridge and probes it as a container health check
// would, with only the environment: /readyz and /healthz answer, an
// unspecified listen host is asked on loopback, and a wrong path or a
// listener that is gone is unhealthy.
func TestProbe(t *testing.T) {
	r := startRun(t, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
		map[string]string{"JETWAY_DATA_DIR": t.TempDir()})
	addr := r.logged(t, "serving", "http")
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, listen string
		args         []string
		wantErr      bool
	}{
		{"readyz by default", addr, nil, false},
		{"healthz", addr, []string{"/healthz"}, false},
		{"every interface, asked on loopback", "0.0.0.0:" + port, []string{"/readyz"}, false},
		{"another path", addr, []string{"/openapi.json"}, true},
		{"two arguments", addr, []string{"/readyz", "/healthz"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			env := map[string]string{"JETWAY_HTTP_LISTEN": tc.listen}
			err := runProbe(context.Background(), tc.args, func(k string) string { return env[k] }, &out)
			if tc.wantErr {
				if !errors.Is(err, errUnhealthy) {
					t.Fatalf("err = %v, want errUnhealthy", err)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), `"status"`) {
				t.Fatalf("err = %v, out %q", err, out.String())
			}
		})
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"JETWAY_HTTP_LISTEN": addr}
	if err := runProbe(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{}); !errors.Is(err, errUnhealthy) {
		t.Errorf("probe of a stopped bridge: %v, want errUnhealthy", err)
	}
}

// TestProbeTLS: over HTTPS the probe trusts the certificate of
// --tls-cert, whatever address it names, and no other.
func TestProbeTLS(t *testing.T) {
	dir := t.TempDir()
	served, servedCert := selfSigned(t, dir, "served")
	other, _ := selfSigned(t, dir, "other")
	ready := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ready"}`)) })
	for _, tc := range []struct {
		name    string
		serve   tls.Certificate
		wantErr bool
	}{
		{"the configured certificate", served, false},
		{"another certificate", other, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(ready)
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{tc.serve}}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
			srv.StartTLS()
			t.Cleanup(srv.Close)
			env := map[string]string{
				"JETWAY_HTTP_LISTEN": srv.Listener.Addr().String(),
				"JETWAY_TLS_CERT":    servedCert[0], "JETWAY_TLS_KEY": servedCert[1],
			}
			err := runProbe(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, errUnhealthy)) {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// selfSigned writes a self-signed certificate for example.invalid (not
// the address it is served on) and its key under dir, and returns the
// pair and the two file names.
func selfSigned(t *testing.T, dir, name string) (tls.Certificate, [2]string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{"example.invalid"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	files := [2]string{filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")}
	for i, b := range [][]byte{certPEM, keyPEM} {
		if err := os.WriteFile(files[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, files
}
