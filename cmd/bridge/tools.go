package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jetway-dev/jetway/auth"
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
