package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/config"
)

// runToken mints an NKey-signed token for curl and other simple clients:
//
//	bridge token --seed-file user.nk [--audience jetway] [--ttl 5m] [--user-jwt-file user.jwt]
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seedFile := fs.String("seed-file", "", "file holding the user NKey seed (SU…); required")
	audience := fs.String("audience", "jetway", "the bridge's audience")
	ttl := fs.Duration("ttl", 5*time.Minute, "lifetime of the token (the bridge accepts at most its max_token_lifetime)")
	jwtFile := fs.String("user-jwt-file", "", "a NATS user JWT (or creds file) for this key, carried in the token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *seedFile == "" {
		return errors.New("token: --seed-file is required")
	}
	seed, err := readSeed(*seedFile)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	var userJWT string
	if *jwtFile != "" {
		if userJWT, err = readJWT(*jwtFile); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}
	tok, err := auth.MintToken(seed, *audience, *ttl, userJWT, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// runHashKey reads an API key on stdin and prints the hash to put in the
// configuration (the key itself is never stored). It takes no flags but
// --help, which prints its usage without reading stdin.
func runHashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hash-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: echo \"$KEY\" | bridge hash-key\n\nReads an API key (at least 16 characters) on stdin and prints the sha256: hash\nto list under api_key_hashes; the key itself is never stored.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hash-key: unexpected argument %q (the key is read on stdin)", fs.Arg(0))
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("hash-key: %w", err)
	}
	key := strings.TrimSpace(line)
	if len(key) < 16 {
		return errors.New("hash-key: give an API key of at least 16 characters on stdin (e.g. openssl rand -hex 32)")
	}
	_, err = fmt.Fprintln(stdout, auth.HashAPIKey(key))
	return err
}

// readSeed finds the seed line in a file (an nk seed file or a creds file).
func readSeed(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "SU") {
			return []byte(l), nil
		}
	}
	return nil, fmt.Errorf("%s holds no user seed (SU…)", path)
}

// readJWT finds the JWT in a file (a bare JWT or a creds file).
func readJWT(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "eyJ") {
			return l, nil
		}
	}
	return "", fmt.Errorf("%s holds no JWT", path)
}

// listFlag is a flag that may be repeated, each value a comma-separated
// list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// runAccessToken mints an access token offline, as the bridge would for
// the identity (same auth configuration, same ack keys, so every replica
// verifies it):
//
//	bridge token access --identity NAME --op consume --stream ORDERS --subject 'orders.>' [--ttl 15m]
func runAccessToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token access", flag.ContinueOnError)
	fs.SetOutput(stderr)
	authFile := fs.String("auth-config", getenv("JETWAY_AUTH_CONFIG"), "the bridge's client authentication file (default $JETWAY_AUTH_CONFIG)")
	keysFile := fs.String("ack-keys-file", getenv("JETWAY_ACK_KEYS_FILE"), "the bridge's ack keys file (default $JETWAY_ACK_KEYS_FILE; or $JETWAY_ACK_KEYS)")
	identity := fs.String("identity", "", "the configured identity the token acts as; required")
	var ops, streams, subjects listFlag
	fs.Var(&ops, "op", "operations: publish, consume, ack, read (repeat or comma-separate); at least one")
	fs.Var(&streams, "stream", "stream name patterns the token may use (repeat); none: every stream the identity may")
	fs.Var(&subjects, "subject", "subject patterns the token may publish to and consume (repeat); none: every subject the identity may")
	ttl := fs.Duration("ttl", 15*time.Minute, "lifetime (at most the configuration's max_access_token_lifetime, default 1h)")
	asJSON := fs.Bool("json", false, "print the token with its id, identity, expiry and scope as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("token access: unexpected argument %q", fs.Arg(0))
	case *authFile == "":
		return errors.New("token access: --auth-config (or JETWAY_AUTH_CONFIG) is required")
	case *identity == "":
		return errors.New("token access: --identity is required")
	}
	keys, err := config.Consume{AckKeysFile: *keysFile, AckKeys: getenv("JETWAY_ACK_KEYS")}.AckKeyBytes()
	if *keysFile != "" {
		keys, err = config.Consume{AckKeysFile: *keysFile}.AckKeyBytes()
	}
	if err != nil {
		return fmt.Errorf("token access: %w", err)
	}
	if len(keys) == 0 {
		return errors.New("token access: the bridge's ack keys are required (--ack-keys-file, JETWAY_ACK_KEYS_FILE or JETWAY_ACK_KEYS): a bridge with random keys cannot verify a token minted elsewhere")
	}
	cfg, err := auth.LoadFile(*authFile)
	if err != nil {
		return fmt.Errorf("token access: %w", err)
	}
	if err := cfg.EnableAccessTokens(keys); err != nil {
		return fmt.Errorf("token access: %w", err)
	}
	id := cfg.Identity(*identity)
	if id == nil {
		return fmt.Errorf("token access: no identity %q in %s", *identity, *authFile)
	}
	sc := auth.Scope{Streams: streams, Subjects: subjects}
	for _, op := range ops {
		sc.Operations = append(sc.Operations, auth.Operation(strings.ToLower(op)))
	}
	m, err := cfg.MintAccessToken(id, sc, *ttl, time.Now())
	if err != nil {
		return fmt.Errorf("token access: %w", err)
	}
	if !*asJSON {
		_, err = fmt.Fprintln(stdout, m.Token)
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"token": m.Token, "id": m.ID, "identity": m.Identity, "expires_at": m.Expires.UTC().Format(time.RFC3339),
		"operations": m.Scope.Operations, "streams": m.Scope.Streams, "subjects": m.Scope.Subjects,
	})
}
