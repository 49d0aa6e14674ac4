// Package auth holds the credentials Jetway presents to NATS and, later, the
// authentication and authorization of Jetway's own clients.
package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ErrInvalidCredentials is a NATS credential configuration that cannot be
// used: two kinds at once, a half-given pair, or an unreadable key.
var ErrInvalidCredentials = errors.New("auth: invalid NATS credentials")

// ErrNKeyChanged is an nkey seed file that now holds the seed of another
// user than when the connection's options were made: nats.go presents the
// public key it was given then, so only a new connection (new Options)
// can present the new key. It comes wrapped from the connection attempt
// (nats.go's error handler, or Connect).
var ErrNKeyChanged = errors.New("auth: the nkey seed file holds another key than this connection presents")

// NATSCredentials are the credentials the bridge connects to NATS with, as
// NATS operators issue them. At most one of CredsFile, NKeySeedFile/NKeySeed,
// Token/TokenFile and User with Password/PasswordFile may be set; TLS
// combines with any of them. Every file is read when Options is called
// and again at each connection attempt, so a rotated file takes effect at
// the next (re)connect, except that an nkey seed file holding another
// user's seed needs new Options (see ErrNKeyChanged).
type NATSCredentials struct {
	// CredsFile is a creds file (user JWT and NKey seed) as nsc writes it.
	CredsFile string
	// NKeySeedFile is a file holding a user NKey seed ("SU…").
	NKeySeedFile string
	// NKeySeed is a user NKey seed given directly (JETWAY_NATS_NKEY).
	NKeySeed string
	// Token is a NATS authentication token.
	Token string
	// TokenFile is a file holding the token (surrounding white space is
	// ignored); not with Token.
	TokenFile string
	// User and Password are NATS user credentials.
	User     string
	Password string
	// PasswordFile is a file holding User's password (surrounding white
	// space is ignored); not with Password.
	PasswordFile string
	// TLSCA is a PEM file of CAs that sign the NATS servers' certificates.
	TLSCA string
	// TLSCert and TLSKey are the client certificate and key for mutual TLS.
	TLSCert string
	TLSKey  string
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string
}

// Options returns the nats.Connect options for these credentials. An
// error wraps ErrInvalidCredentials; a token or password file that cannot
// be read, or is empty, is one.
func (c NATSCredentials) Options() ([]nats.Option, error) {
	kinds := 0
	for _, set := range []bool{
		c.CredsFile != "", c.NKeySeedFile != "" || c.NKeySeed != "", c.Token != "" || c.TokenFile != "",
		c.User != "" || c.Password != "" || c.PasswordFile != "",
	} {
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
		pub, err := nkeyPublicKey(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed file: %w", ErrInvalidCredentials, err)
		}
		path := c.NKeySeedFile
		opts = append(opts, nats.Nkey(pub, func(nonce []byte) ([]byte, error) { return signWithSeedFile(path, pub, nonce) }))
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
	case c.Token != "" && c.TokenFile != "":
		return nil, fmt.Errorf("%w: set either a token file or a token", ErrInvalidCredentials)
	case c.TokenFile != "":
		f, err := newSecretFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("%w: token file: %w", ErrInvalidCredentials, err)
		}
		opts = append(opts, nats.TokenHandler(f.current))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.Password != "" && c.PasswordFile != "":
		return nil, fmt.Errorf("%w: set either a password file or a password", ErrInvalidCredentials)
	case c.PasswordFile != "":
		if c.User == "" {
			return nil, fmt.Errorf("%w: user and password go together", ErrInvalidCredentials)
		}
		f, err := newSecretFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: password file: %w", ErrInvalidCredentials, err)
		}
		user := c.User
		opts = append(opts, nats.UserInfoHandler(func() (string, string) { return user, f.current() }))
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
	case c.Token != "" || c.TokenFile != "":
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
	if c.TokenFile != "" {
		attrs = append(attrs, slog.String("token_file", c.TokenFile))
	}
	if c.PasswordFile != "" {
		attrs = append(attrs, slog.String("password_file", c.PasswordFile))
	}
	if c.User != "" {
		attrs = append(attrs, slog.String("user", c.User))
	}
	if c.TLSCA != "" || c.TLSCert != "" {
		attrs = append(attrs, slog.Bool("tls", true))
	}
	return slog.GroupValue(attrs...)
}

// nkeyPublicKey is the public key of the user seed in path.
func nkeyPublicKey(path string) (string, error) {
	kp, err := readSeedFile(path)
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", errors.New("not a user seed")
	}
	return pub, nil
}

// signWithSeedFile signs a server's nonce with the seed path holds now,
// which must still be pub's: the seed is read at each attempt and not
// kept in memory.
func signWithSeedFile(path, pub string, nonce []byte) ([]byte, error) {
	kp, err := readSeedFile(path)
	if err != nil {
		return nil, err
	}
	defer kp.Wipe()
	if now, err := kp.PublicKey(); err != nil || now != pub {
		return nil, fmt.Errorf("%w (%s)", ErrNKeyChanged, path)
	}
	return kp.Sign(nonce)
}

func readSeedFile(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		// The error names the file, never what it holds.
		return nil, fmt.Errorf("%s holds no nkey seed", path)
	}
	return kp, nil
}

// ReadSecretFile reads a file holding one secret (a password, a token):
// its content without surrounding white space, which must not be empty.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// secretFile is a secret read again at each connection attempt. A read
// that fails (the file mid-rotation, removed) keeps the last value read:
// nats.go's token and user-info callbacks cannot fail, and the server's
// refusal of a stale value is logged as any failed attempt is.
type secretFile struct {
	path string
	mu   sync.Mutex
	last string
}

// newSecretFile reads path once, so that a missing or empty file is an
// error at start rather than at the first connection.
func newSecretFile(path string) (*secretFile, error) {
	v, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	return &secretFile{path: path, last: v}, nil
}

func (f *secretFile) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, err := ReadSecretFile(f.path); err == nil {
		f.last = v
	}
	return f.last
}
