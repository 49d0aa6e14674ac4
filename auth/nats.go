// Package auth holds the credentials Jetway presents to NATS and, later, the
// authentication and authorization of Jetway's own clients.
package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ErrInvalidCredentials is a NATS credential configuration that cannot be
// used: two kinds at once, a half-given pair, or an unreadable key.
var ErrInvalidCredentials = errors.New("auth: invalid NATS credentials")

// NATSCredentials are the credentials the bridge connects to NATS with, as
// NATS operators issue them. At most one of CredsFile, NKeySeedFile/NKeySeed,
// Token and User/Password may be set; TLS combines with any of them.
type NATSCredentials struct {
	// CredsFile is a creds file (user JWT and NKey seed) as nsc writes it.
	CredsFile string
	// NKeySeedFile is a file holding a user NKey seed ("SU…").
	NKeySeedFile string
	// NKeySeed is a user NKey seed given directly (JETWAY_NATS_NKEY).
	NKeySeed string
	// Token is a NATS authentication token.
	Token string
	// User and Password are NATS user credentials.
	User     string
	Password string
	// TLSCA is a PEM file of CAs that sign the NATS servers' certificates.
	TLSCA string
	// TLSCert and TLSKey are the client certificate and key for mutual TLS.
	TLSCert string
	TLSKey  string
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string
}

// Options returns the nats.Connect options for these credentials.
func (c NATSCredentials) Options() ([]nats.Option, error) {
	kinds := 0
	for _, set := range []bool{c.CredsFile != "", c.NKeySeedFile != "" || c.NKeySeed != "", c.Token != "", c.User != "" || c.Password != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return nil, fmt.Errorf("%w: set only one of creds file, nkey, token, user/password", ErrInvalidCredentials)
	}
	var opts []nats.Option
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "" && c.NKeySeed != "":
		return nil, fmt.Errorf("%w: set either an nkey seed file or an nkey seed", ErrInvalidCredentials)
	case c.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed file: %w", ErrInvalidCredentials, err)
		}
		opts = append(opts, opt)
	case c.NKeySeed != "":
		kp, err := nkeys.FromSeed([]byte(c.NKeySeed))
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed: not a valid seed", ErrInvalidCredentials)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed: %w", ErrInvalidCredentials, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.User != "" || c.Password != "":
		if c.User == "" || c.Password == "" {
			return nil, fmt.Errorf("%w: user and password go together", ErrInvalidCredentials)
		}
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("%w: TLS certificate and key go together", ErrInvalidCredentials)
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSServerName != "" {
		opts = append(opts, nats.Secure(&tls.Config{ServerName: c.TLSServerName, MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

// TLSOptions returns only the TLS part of Options: what connections with
// other credentials to the same servers share.
func (c NATSCredentials) TLSOptions() ([]nats.Option, error) {
	return NATSCredentials{TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSServerName: c.TLSServerName}.Options()
}

// LogValue describes the credentials for logs without any secret: which
// kind is used, file paths, never seeds, tokens or passwords.
func (c NATSCredentials) LogValue() slog.Value {
	kind := "none"
	switch {
	case c.CredsFile != "":
		kind = "creds"
	case c.NKeySeedFile != "" || c.NKeySeed != "":
		kind = "nkey"
	case c.Token != "":
		kind = "token"
	case c.User != "":
		kind = "user"
	}
	attrs := []slog.Attr{slog.String("kind", kind)}
	if c.CredsFile != "" {
		attrs = append(attrs, slog.String("creds_file", c.CredsFile))
	}
	if c.NKeySeedFile != "" {
		attrs = append(attrs, slog.String("nkey_seed_file", c.NKeySeedFile))
	}
	if c.User != "" {
		attrs = append(attrs, slog.String("user", c.User))
	}
	if c.TLSCA != "" || c.TLSCert != "" {
		attrs = append(attrs, slog.Bool("tls", true))
	}
	return slog.GroupValue(attrs...)
}
