package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// operatorMode runs a nats-server trusting one operator and one account
// (with JetStream), and returns a function writing creds for a new user of
// that account, or of another, untrusted account when trusted is false.
func operatorMode(t *testing.T) (*natsserver.Server, func(path string, trusted bool)) {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &natsserver.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	// Operator mode with JetStream wants a system account.
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	if err := resolver.Store(spub, sjwt); err != nil {
		t.Fatal(err)
	}
	ns := jetwaytest.NATSServer(t, &natsserver.Options{
		JetStream: true, StoreDir: t.TempDir(), TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver,
		SystemAccount: spub,
	})
	other, _ := nkeys.CreateAccount()
	write := func(path string, trusted bool) {
		signer := akp
		if !trusted {
			signer = other
		}
		issuer, _ := signer.PublicKey()
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		uc := jwt.NewUserClaims(upub)
		uc.IssuerAccount = issuer
		ujwt, err := uc.Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := ukp.Seed()
		creds, err := jwt.FormatUserConfig(ujwt, seed)
		if err != nil {
			t.Fatal(err)
		}
		// Written beside and renamed, as operators rotate files.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, creds, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	return ns, write
}

// TestBadNATSCredentialsFailClosedAndRecover starts the bridge with creds
// NATS refuses: it serves as not ready, answers UNAVAILABLE and never
// connects anonymously; once the file holds good creds it recovers
// without a restart (Reload is what SIGHUP calls).
func TestBadNATSCredentialsFailClosedAndRecover(t *testing.T) {
	ns, write := operatorMode(t)
	creds := filepath.Join(t.TempDir(), "bridge.creds")
	write(creds, false)

	b := jetwaytest.StartWithoutNATSClient(t, func(c *config.Config) {
		c.NATS.URLs = ns.ClientURL()
		c.NATS.Credentials.CredsFile = creds
		c.NATS.ConnectTimeout = 500 * time.Millisecond
	})
	ctx := jetwaytest.Context(t, 30*time.Second)
	if r := b.Do(t, http.MethodGet, "/readyz", ""); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with refused credentials = %d, want 503", r.Status)
	}
	_, err := b.Admin.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RPC with refused credentials: %v, want UNAVAILABLE", err)
	}
	if n := ns.NumClients(); n != 0 {
		t.Fatalf("%d clients connected to NATS with refused credentials", n)
	}

	write(creds, true)
	b.Server.Reload()
	waitFor(t, "readyz 200 after the credentials were fixed", func() bool {
		return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK
	})
	if _, err := b.Admin.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}
