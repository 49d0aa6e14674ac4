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
