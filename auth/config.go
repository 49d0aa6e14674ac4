package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"sigs.k8s.io/yaml"

	"github.com/jetway-dev/jetway/auth/perm"
)

// ErrInvalidConfig is an authentication configuration that cannot be used.
var ErrInvalidConfig = errors.New("auth: invalid configuration")

// File is the authentication configuration file (YAML or JSON).
type File struct {
	// Audience is the "aud" NKey-signed tokens must carry; default "jetway".
	Audience string `json:"audience,omitempty"`
	// MaxTokenLifetime bounds exp - iat of NKey-signed tokens; default 5m.
	MaxTokenLifetime string `json:"max_token_lifetime,omitempty"`
	// MaxAccessTokenLifetime bounds the lifetime of access tokens
	// (AccessService.CreateAccessToken, bridge token access); default 1h,
	// at most 24h.
	MaxAccessTokenLifetime string `json:"max_access_token_lifetime,omitempty"`
	// TrustedAccounts are NATS accounts whose user JWTs identify clients.
	TrustedAccounts []TrustedAccount `json:"trusted_accounts,omitempty"`
	// JWTUsers grants to identities from NATS user JWTs what a JWT does
	// not say: consume and admin rights and limits (publish and subject
	// permissions come from the JWT itself).
	JWTUsers *Grant `json:"jwt_users,omitempty"`
	// Identities are the clients and what each may do.
	Identities []IdentityConfig `json:"identities"`
	// DefaultLimits apply to identities that set none.
	DefaultLimits Limits `json:"default_limits,omitempty"`
}

// TrustedAccount is a NATS account (as nsc manages it).
type TrustedAccount struct {
	// PublicKey is the account's public key ("A…").
	PublicKey string `json:"public_key,omitempty"`
	// JWT is the account JWT; when given, its signing keys are trusted and
	// its revocations apply.
	JWT string `json:"jwt,omitempty"`
}

// IdentityConfig declares one client identity.
type IdentityConfig struct {
	Name string `json:"name"`
	// NKeys are user public keys ("U…") whose signed tokens prove this
	// identity.
	NKeys []string `json:"nkeys,omitempty"`
	// APIKeyHashes are "sha256:<hex>" of API keys (never the keys).
	APIKeyHashes []string `json:"api_key_hashes,omitempty"`
	// CertSubjects are client certificate subjects (RFC 2253, e.g.
	// "CN=orders,O=Acme") that prove this identity over mTLS.
	CertSubjects []string `json:"cert_subjects,omitempty"`
	Grant
	// NATS are credentials of this identity's own: its calls then run on a
	// NATS connection with them (identity propagation).
	NATS *NATSCredentialsConfig `json:"nats,omitempty"`
}

// Grant is what an identity may do.
type Grant struct {
	Publish *perm.Set     `json:"publish,omitempty"`
	Consume *ConsumeGrant `json:"consume,omitempty"`
	Admin   *AdminGrant   `json:"admin,omitempty"`
	Limits  Limits        `json:"limits,omitempty"`
}

// ConsumeGrant says what an identity may consume.
type ConsumeGrant struct {
	// Streams are patterns over "STREAM.CONSUMER" for durable consumers
	// ("ORDERS.billing"; "ORDERS.*": any durable of ORDERS) and over
	// "STREAM" alone for ephemeral subscriptions ("ORDERS"); ">" is all.
	Streams []string `json:"streams"`
	// Subjects bound the filter subjects of the consumers it creates
	// (ephemeral subscriptions, and durables with CreateDurables). Not
	// given: every subject of the stream; given with an empty allow list:
	// none.
	Subjects *perm.Set `json:"subjects,omitempty"`
	// CreateDurables lets a Subscribe with a config create a durable
	// consumer it may consume that does not exist yet. Without it only
	// existing durables (made by an admin) can be consumed: durable
	// consumers outlive their clients and hold server state.
	CreateDurables bool `json:"create_durables,omitempty"`
}

// AdminGrant says what an identity may administer.
type AdminGrant struct {
	// Streams are the streams it may see and (with Write) change. Not
	// given (or ">"): every stream, which also grants account-wide reads
	// (account information); given but empty: none.
	Streams []string `json:"streams,omitempty"`
	Write   bool     `json:"write,omitempty"`
	// Subjects bound the subjects its streams may capture and the filter
	// subjects of the consumers it creates. Not given: every subject for
	// an admin of every stream, none for an admin of some streams (which
	// then cannot set subjects). Reserved spaces (_INBOX., $JS., $SYS.…)
	// are refused to everyone, whatever this says.
	Subjects *perm.Set `json:"subjects,omitempty"`
}

// NATSCredentialsConfig is the file form of NATSCredentials (secrets by
// file only).
type NATSCredentialsConfig struct {
	CredsFile    string `json:"creds_file,omitempty"`
	NKeySeedFile string `json:"nkey_seed_file,omitempty"`
}

// Config is a loaded, validated authentication configuration.
type Config struct {
	audience    string
	maxLifetime time.Duration
	byNKey      map[string]*Identity
	byAPIKey    map[[32]byte]*Identity
	byCert      map[string]*Identity
	accounts    map[string]*jwt.AccountClaims // trusted account or signing key → account (claims may be empty)
	jwtTemplate *Identity                     // what jwt_users grants, compiled at load
	defaults    Limits
	identities  []*Identity
	jwtCache    identityCache
	tokens      tokenCache
	// byName holds the configured identities, for access tokens.
	byName            map[string]*Identity
	maxAccessLifetime time.Duration
	access            *accessKeys // nil until EnableAccessTokens
}

// LoadFile reads and validates a configuration file.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, path, err)
	}
	return New(f)
}

// New validates a configuration.
func New(f File) (*Config, error) {
	c := &Config{
		audience: f.Audience, maxLifetime: 5 * time.Minute,
		byNKey: map[string]*Identity{}, byAPIKey: map[[32]byte]*Identity{}, byCert: map[string]*Identity{},
		accounts: map[string]*jwt.AccountClaims{}, defaults: f.DefaultLimits,
		byName: map[string]*Identity{}, maxAccessLifetime: defaultAccessMax,
	}
	if c.audience == "" {
		c.audience = "jetway"
	}
	if f.MaxTokenLifetime != "" {
		d, err := time.ParseDuration(f.MaxTokenLifetime)
		if err != nil || d <= 0 || d > time.Hour {
			return nil, fmt.Errorf("%w: max_token_lifetime %q: a duration up to 1h", ErrInvalidConfig, f.MaxTokenLifetime)
		}
		c.maxLifetime = d
	}
	if f.MaxAccessTokenLifetime != "" {
		d, err := time.ParseDuration(f.MaxAccessTokenLifetime)
		if err != nil || d < time.Second || d > maxAccessLifetime {
			return nil, fmt.Errorf("%w: max_access_token_lifetime %q: a duration from 1s to %s", ErrInvalidConfig, f.MaxAccessTokenLifetime, maxAccessLifetime)
		}
		c.maxAccessLifetime = d
	}
	for i, a := range f.TrustedAccounts {
		if err := c.addAccount(a); err != nil {
			return nil, fmt.Errorf("%w: trusted_accounts[%d]: %w", ErrInvalidConfig, i, err)
		}
	}
	// jwt_users is validated now, like any identity's grant: a bad pattern
	// or an empty consume.streams refuses the configuration.
	jwtGrant := Grant{}
	if f.JWTUsers != nil {
		jwtGrant = *f.JWTUsers
		jwtGrant.Publish = nil // from each JWT
	}
	var err error
	if c.jwtTemplate, err = c.compile("jwt", jwtGrant); err != nil {
		return nil, fmt.Errorf("%w: jwt_users: %w", ErrInvalidConfig, err)
	}
	names := map[string]bool{}
	for i, ic := range f.Identities {
		if ic.Name == "" || names[ic.Name] || strings.HasPrefix(ic.Name, "jwt:") {
			return nil, fmt.Errorf("%w: identities[%d]: a unique name is required (not starting with \"jwt:\", which names NATS users)", ErrInvalidConfig, i)
		}
		names[ic.Name] = true
		id, err := c.compile(ic.Name, ic.Grant)
		if err != nil {
			return nil, fmt.Errorf("%w: identity %q: %w", ErrInvalidConfig, ic.Name, err)
		}
		if ic.NATS != nil {
			id.nats = &NATSCredentials{CredsFile: ic.NATS.CredsFile, NKeySeedFile: ic.NATS.NKeySeedFile}
			if _, err := id.nats.Options(); err != nil {
				return nil, fmt.Errorf("%w: identity %q: nats: %w", ErrInvalidConfig, ic.Name, err)
			}
		}
		for _, k := range ic.NKeys {
			if !nkeys.IsValidPublicUserKey(k) {
				return nil, fmt.Errorf("%w: identity %q: %q is not a user public key", ErrInvalidConfig, ic.Name, k)
			}
			if c.byNKey[k] != nil {
				return nil, fmt.Errorf("%w: nkey %q belongs to two identities", ErrInvalidConfig, k)
			}
			c.byNKey[k] = id
		}
		// Callers get the identity as each method proves it, made once
		// here rather than copied on every call (an idle stream kept its
		// copy, 128 B, for its whole life).
		byKey, byCert := id.with("apikey"), id.with("cert")
		for _, h := range ic.APIKeyHashes {
			sum, err := parseKeyHash(h)
			if err != nil {
				return nil, fmt.Errorf("%w: identity %q: %w", ErrInvalidConfig, ic.Name, err)
			}
			if c.byAPIKey[sum] != nil {
				return nil, fmt.Errorf("%w: an API key belongs to two identities", ErrInvalidConfig)
			}
			c.byAPIKey[sum] = byKey
		}
		for _, s := range ic.CertSubjects {
			if c.byCert[s] != nil {
				return nil, fmt.Errorf("%w: certificate subject %q belongs to two identities", ErrInvalidConfig, s)
			}
			c.byCert[s] = byCert
		}
		if len(ic.NKeys)+len(ic.APIKeyHashes)+len(ic.CertSubjects) == 0 {
			return nil, fmt.Errorf("%w: identity %q has no credential (nkeys, api_key_hashes or cert_subjects)", ErrInvalidConfig, ic.Name)
		}
		c.identities = append(c.identities, id)
		c.byName[ic.Name] = id
	}
	if len(c.identities) == 0 && len(c.accounts) == 0 {
		return nil, fmt.Errorf("%w: no identities and no trusted accounts", ErrInvalidConfig)
	}
	return c, nil
}

// compile turns a grant into an identity's matchers; a missing section
// grants nothing (fail closed), and so does a section whose allow list is
// empty: `publish: {}`, `publish: {deny: [x]}` and `subjects: {allow: []}`
// grant nothing (nats-server's own reading of an empty allow list as
// "everything" does not apply to Jetway's grants; use ">").
func (c *Config) compile(name string, g Grant) (*Identity, error) {
	id := &Identity{Name: name, limits: g.Limits}
	if id.limits == (Limits{}) {
		id.limits = c.defaults
	}
	var err error
	if id.publish, err = compileGrant(g.Publish); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if g.Consume != nil {
		if len(g.Consume.Streams) == 0 {
			return nil, errors.New("consume: streams is required")
		}
		if id.streams, err = perm.Compile(perm.Set{Allow: g.Consume.Streams}); err != nil {
			return nil, fmt.Errorf("consume.streams: %w", err)
		}
		subjects := g.Consume.Subjects
		if subjects == nil {
			subjects = &perm.Set{Allow: []string{">"}} // the whole stream
		}
		if id.subjects, err = compileGrant(subjects); err != nil {
			return nil, fmt.Errorf("consume.subjects: %w", err)
		}
		id.createDurables = g.Consume.CreateDurables
	}
	if g.Admin != nil {
		// streams not given: every stream; given but empty: none.
		streams := &perm.Set{Allow: g.Admin.Streams}
		if g.Admin.Streams == nil {
			streams.Allow = []string{">"}
		}
		if id.admin, err = compileGrant(streams); err != nil {
			return nil, fmt.Errorf("admin.streams: %w", err)
		}
		id.write = g.Admin.Write
		// Names are single tokens: "*" covers them all, as ">" does.
		id.adminAll = id.admin.AllowsAll("*")
		switch {
		case g.Admin.Subjects != nil:
			if id.adminSubjects, err = compileGrant(g.Admin.Subjects); err != nil {
				return nil, fmt.Errorf("admin.subjects: %w", err)
			}
		case id.adminAll:
			id.adminSubjects, _ = perm.Compile(perm.Set{Allow: []string{">"}})
		}
	}
	return id, nil
}

// compileGrant compiles a subject grant of the configuration file: nil,
// or an empty allow list, grants nothing (a nil Matcher).
func compileGrant(s *perm.Set) (*perm.Matcher, error) {
	if s == nil || len(s.Allow) == 0 {
		// Deny patterns are still checked for validity.
		_, err := perm.Compile(perm.Set{Allow: []string{">"}, Deny: setDeny(s)})
		return nil, err
	}
	return perm.Compile(*s)
}

func setDeny(s *perm.Set) []string {
	if s == nil {
		return nil
	}
	return s.Deny
}

func (c *Config) addAccount(a TrustedAccount) error {
	switch {
	case a.JWT != "":
		ac, err := jwt.DecodeAccountClaims(a.JWT)
		if err != nil {
			return fmt.Errorf("account jwt: %w", err)
		}
		if a.PublicKey != "" && a.PublicKey != ac.Subject {
			return fmt.Errorf("public_key %q is not the JWT's account %q", a.PublicKey, ac.Subject)
		}
		c.accounts[ac.Subject] = ac
		for k := range ac.SigningKeys {
			c.accounts[k] = ac
		}
	case nkeys.IsValidPublicAccountKey(a.PublicKey):
		c.accounts[a.PublicKey] = &jwt.AccountClaims{ClaimsData: jwt.ClaimsData{Subject: a.PublicKey}}
	default:
		return fmt.Errorf("%q is not an account public key", a.PublicKey)
	}
	return nil
}

// Propagates reports whether some identity has NATS credentials of its
// own (and so needs a Pool).
func (c *Config) Propagates() bool {
	for _, id := range c.identities {
		if id.nats != nil {
			return true
		}
	}
	return false
}

// HashAPIKey returns the configuration form of an API key's hash.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func parseKeyHash(h string) ([32]byte, error) {
	var sum [32]byte
	hexPart, ok := strings.CutPrefix(h, "sha256:")
	raw, err := hex.DecodeString(hexPart)
	if !ok || err != nil || len(raw) != 32 {
		return sum, fmt.Errorf("api key hash %q: want sha256:<64 hex digits> (jetway hash-key prints it)", h)
	}
	copy(sum[:], raw)
	return sum, nil
}
