package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// connect dials with the credentials' options and reports the error.
func connect(t *testing.T, url string, c auth.NATSCredentials) error {
	t.Helper()
	opts, err := c.Options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenAndUserPassword(t *testing.T) {
	tok := jetwaytest.NATSServer(t, &natsserver.Options{Authorization: "s3cret"})
	if err := connect(t, tok.ClientURL(), auth.NATSCredentials{Token: "s3cret"}); err != nil {
		t.Errorf("right token: %v", err)
	}
	if err := connect(t, tok.ClientURL(), auth.NATSCredentials{Token: "wrong"}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong token: %v, want authorization violation", err)
	}
	if err := connect(t, tok.ClientURL(), auth.NATSCredentials{}); err == nil {
		t.Error("no credentials accepted by a server that requires a token")
	}

	up := jetwaytest.NATSServer(t, &natsserver.Options{Users: []*natsserver.User{{Username: "bridge", Password: "pw"}}})
	if err := connect(t, up.ClientURL(), auth.NATSCredentials{User: "bridge", Password: "pw"}); err != nil {
		t.Errorf("right password: %v", err)
	}
	if err := connect(t, up.ClientURL(), auth.NATSCredentials{User: "bridge", Password: "no"}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong password: %v", err)
	}
}

func TestNKeySeedFileAndEnv(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{Nkeys: []*natsserver.NkeyUser{{Nkey: pub}}})

	if err := connect(t, ns.ClientURL(), auth.NATSCredentials{NKeySeedFile: writeFile(t, "user.nk", string(seed))}); err != nil {
		t.Errorf("seed file: %v", err)
	}
	if err := connect(t, ns.ClientURL(), auth.NATSCredentials{NKeySeed: string(seed)}); err != nil {
		t.Errorf("seed from env: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	if err := connect(t, ns.ClientURL(), auth.NATSCredentials{NKeySeed: string(otherSeed)}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("unknown nkey: %v, want authorization violation", err)
	}
	if err := connect(t, ns.ClientURL(), auth.NATSCredentials{NKeySeedFile: writeFile(t, "bad.nk", "not a seed")}); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("bad seed file: %v, want ErrInvalidCredentials", err)
	}
}

// TestNKeySeedFileChanged: a seed file rewritten with another user's seed
// is read at the next attempt, whose public key was fixed when the
// options were made: the attempt fails with ErrNKeyChanged, before
// anything is sent, and new options connect with the new key.
func TestNKeySeedFileChanged(t *testing.T) {
	old, _ := nkeys.CreateUser()
	oldSeed, _ := old.Seed()
	cur, _ := nkeys.CreateUser()
	pub, _ := cur.PublicKey()
	seed, _ := cur.Seed()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{Nkeys: []*natsserver.NkeyUser{{Nkey: pub}}})
	file := writeFile(t, "user.nk", string(oldSeed))
	c := auth.NATSCredentials{NKeySeedFile: file}
	opts, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = nats.Connect(ns.ClientURL(), append(opts, nats.Timeout(5*time.Second))...)
	if !errors.Is(err, auth.ErrNKeyChanged) {
		t.Fatalf("options made before the seed changed: %v, want ErrNKeyChanged", err)
	}
	if strings.Contains(err.Error(), string(seed)) || strings.Contains(err.Error(), string(oldSeed)) {
		t.Errorf("the error holds a seed: %v", err)
	}
	if err := connect(t, ns.ClientURL(), c); err != nil {
		t.Errorf("new options after the change: %v", err)
	}
}

// TestCredsFile runs a server in operator mode, as nsc sets one up, and
// connects with a creds file holding a user JWT signed by the account.
func TestCredsFile(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	oc, _ = jwt.DecodeOperatorClaims(ojwt)

	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &natsserver.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	ns := jetwaytest.NATSServer(t, &natsserver.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver})

	creds := func(exp time.Duration) string {
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		uc := jwt.NewUserClaims(upub)
		uc.IssuerAccount = apub
		if exp != 0 {
			uc.Expires = time.Now().Add(exp).Unix()
		}
		ujwt, err := uc.Encode(akp)
		if err != nil {
			t.Fatal(err)
		}
		useed, _ := ukp.Seed()
		data, err := jwt.FormatUserConfig(ujwt, useed)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, "user.creds", string(data))
	}
	if err := connect(t, ns.ClientURL(), auth.NATSCredentials{CredsFile: creds(0)}); err != nil {
		t.Errorf("valid creds: %v", err)
	}
	if err := connect(t, ns.ClientURL(), auth.NATSCredentials{CredsFile: creds(-time.Hour)}); err == nil {
		t.Error("expired creds accepted")
	}
}

func TestLogValueHasNoSecrets(t *testing.T) {
	c := auth.NATSCredentials{NKeySeed: "SUAseedseedseed", Token: "tok", Password: "pw", User: "u"}
	v := c.LogValue().String()
	for _, secret := range []string{"SUAseed", "tok", "pw"} {
		if strings.Contains(v, secret) {
			t.Errorf("LogValue %q contains %q", v, secret)
		}
	}
}

// TestPasswordAndTokenFiles: the password and token come from files, read
// again at each connection attempt (the same options refused once the
// file changes); a file with its inline form, or an unreadable or empty
// file, is ErrInvalidCredentials.
func TestPasswordAndTokenFiles(t *testing.T) {
	up := jetwaytest.NATSServer(t, &natsserver.Options{Users: []*natsserver.User{{Username: "bridge", Password: "pw-from-file"}}})
	tok := jetwaytest.NATSServer(t, &natsserver.Options{Authorization: "token-from-file"})
	for _, tt := range []struct {
		name  string
		url   string
		creds func(path string) auth.NATSCredentials
		right string
	}{
		{"password", up.ClientURL(), func(p string) auth.NATSCredentials { return auth.NATSCredentials{User: "bridge", PasswordFile: p} }, "pw-from-file"},
		{"token", tok.ClientURL(), func(p string) auth.NATSCredentials { return auth.NATSCredentials{TokenFile: p} }, "token-from-file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "secret", tt.right+"\n")
			opts, err := tt.creds(path).Options()
			if err != nil {
				t.Fatal(err)
			}
			dial := func() error {
				nc, err := nats.Connect(tt.url, append(opts, nats.Timeout(5*time.Second))...)
				if err == nil {
					nc.Close()
				}
				return err
			}
			if err := dial(); err != nil {
				t.Fatalf("right secret in the file: %v", err)
			}
			if err := os.WriteFile(path, []byte("wrong"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := dial(); !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("after the file changed to a wrong secret: %v, want authorization violation (file read again)", err)
			}
			if err := os.WriteFile(path, []byte(tt.right), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := dial(); err != nil {
				t.Errorf("after the file was fixed: %v", err)
			}
			for name, c := range map[string]auth.NATSCredentials{
				"missing": tt.creds(filepath.Join(t.TempDir(), "none")),
				"empty":   tt.creds(writeFile(t, "empty", " \n")),
			} {
				if _, err := c.Options(); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Errorf("%s file: %v, want ErrInvalidCredentials", name, err)
				}
			}
		})
	}
	for name, c := range map[string]auth.NATSCredentials{
		"password file and password": {User: "bridge", Password: "pw", PasswordFile: writeFile(t, "pw", "pw")},
		"token file and token":       {Token: "t", TokenFile: writeFile(t, "tok", "t")},
		"password file without user": {PasswordFile: writeFile(t, "pw2", "pw")},
		"token file and user":        {TokenFile: writeFile(t, "tok2", "t"), User: "u", Password: "p"},
	} {
		if _, err := c.Options(); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("%s: %v, want ErrInvalidCredentials", name, err)
		}
	}
}
