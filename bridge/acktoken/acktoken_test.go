package acktoken

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Replies in both formats JetStream uses for ack subjects.
const (
	replyV1       = "$JS.ACK.S.C.1.2.3.1700000000000000000.4"
	replyV2       = "$JS.ACK._.ACCHASH.S.C.1.2.3.1700000000000000000.4.rand"
	replyV2NoRand = "$JS.ACK.hub.ACCHASH.ORDERS.worker-1.7.1000.999.1700000000123456789.0"
)

// testKey returns a deterministic key of n bytes starting at b.
func testKey(b byte, n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// fixedNow is the verification time of the fuzz targets and seeds.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newSigner(t testing.TB, keys ...[]byte) *Signer {
	t.Helper()
	s, err := New(keys...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func sign(t testing.TB, s *Signer, c Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatalf("Sign(%+v): %v", c, err)
	}
	return tok
}

// sentinels are the errors Verify may wrap.
var sentinels = []error{ErrMalformed, ErrBadSignature, ErrExpired, ErrInvalidKey}

// wrapped reports the sentinels err wraps.
func wrapped(err error) []error {
	var out []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

func TestAckTokenRoundTrip(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		reply    string
		identity string
		ackWait  time.Duration
		want     Claims
	}{
		{
			name: "v1", reply: replyV1, ackWait: 30 * time.Second,
			want: Claims{Stream: "S", Consumer: "C", Delivered: 1, StreamSeq: 2, ConsumerSeq: 3},
		},
		{
			name: "v2 with random token", reply: replyV2, identity: "alice", ackWait: 1500 * time.Millisecond,
			want: Claims{Stream: "S", Consumer: "C", Delivered: 1, StreamSeq: 2, ConsumerSeq: 3},
		},
		{
			name: "v2 with domain, no random token", reply: replyV2NoRand, identity: "CN=client,O=x", ackWait: time.Hour,
			want: Claims{Stream: "ORDERS", Consumer: "worker-1", Delivered: 7, StreamSeq: 1000, ConsumerSeq: 999},
		},
		{
			name: "max numbers", reply: "$JS.ACK.S.C.18446744073709551615.18446744073709551615.18446744073709551615.0.18446744073709551615",
			ackWait: time.Millisecond,
			want:    Claims{Stream: "S", Consumer: "C", Delivered: 1<<64 - 1, StreamSeq: 1<<64 - 1, ConsumerSeq: 1<<64 - 1},
		},
	}
	s := newSigner(t, testKey(1, 32))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expires := now.Add(10 * time.Second)
			tok := sign(t, s, Claims{Reply: tt.reply, Identity: tt.identity, Expires: expires, AckWait: tt.ackWait})
			if tok == "" {
				t.Fatal("empty token")
			}
			if i := strings.IndexFunc(tok, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
			}); i >= 0 {
				t.Errorf("token %q is not URL-safe at %d", tok, i)
			}
			got, err := s.Verify(tok, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := tt.want
			want.Reply, want.Identity, want.AckWait = tt.reply, tt.identity, tt.ackWait
			// The expiry keeps millisecond precision.
			want.Expires = time.UnixMilli(expires.UnixMilli())
			if !got.Expires.Equal(want.Expires) {
				t.Errorf("Expires = %v, want %v", got.Expires, want.Expires)
			}
			got.Expires, want.Expires = time.Time{}, time.Time{}
			if got != want {
				t.Errorf("claims:\ngot  %+v\nwant %+v", got, want)
			}
			// Signing is deterministic: the same claims give the same token.
			if again := sign(t, s, Claims{Reply: tt.reply, Identity: tt.identity, Expires: expires, AckWait: tt.ackWait}); again != tok {
				t.Errorf("second Sign = %q, want %q", again, tok)
			}
			// Parsed fields in the input claims are ignored by Sign: the
			// reply is the only source of truth.
			lie := sign(t, s, Claims{Reply: tt.reply, Identity: tt.identity, Expires: expires, AckWait: tt.ackWait, Stream: "OTHER", StreamSeq: 42})
			if lie != tok {
				t.Errorf("Sign used claim fields other than Reply, Identity, Expires, AckWait")
			}
		})
	}
}

func TestAckTokenExpired(t *testing.T) {
	s := newSigner(t, testKey(1, 32))
	expires := time.UnixMilli(time.Now().UnixMilli())
	tok := sign(t, s, Claims{Reply: replyV1, Expires: expires, AckWait: time.Second})

	if _, err := s.Verify(tok, expires.Add(-time.Millisecond)); err != nil {
		t.Errorf("Verify 1ms before the deadline: %v", err)
	}
	for _, at := range []time.Time{expires, expires.Add(time.Millisecond), expires.Add(time.Hour)} {
		c, err := s.Verify(tok, at)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("Verify at deadline%+v: err = %v, want ErrExpired", at.Sub(expires), err)
		}
		if got := wrapped(err); len(got) != 1 {
			t.Errorf("expired error wraps %v, want exactly ErrExpired", got)
		}
		// An expired token is still authentic: its claims come back, so
		// that the caller can say when it expired.
		if c.Reply != replyV1 || !c.Expires.Equal(expires) || c.Stream != "S" || c.StreamSeq != 2 {
			t.Errorf("claims of expired token = %+v", c)
		}
	}

	// A deadline in the past at signing time is expired at once.
	old := sign(t, s, Claims{Reply: replyV1, Expires: time.Now().Add(-time.Second), AckWait: time.Second})
	if _, err := s.Verify(old, time.Now()); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify of a token signed already expired: %v, want ErrExpired", err)
	}
}

// TestAckTokenTamperedBytes flips bits in every byte of the decoded token and
// truncates and extends it: none of that may verify.
func TestAckTokenTamperedBytes(t *testing.T) {
	s := newSigner(t, testKey(1, 32))
	now := time.Now()
	for _, reply := range []string{replyV1, replyV2} {
		tok := sign(t, s, Claims{Reply: reply, Identity: "bob", Expires: now.Add(time.Hour), AckWait: time.Minute})
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatalf("token is not raw URL base64: %v", err)
		}
		check := func(what string, b []byte) {
			t.Helper()
			c, err := s.Verify(base64.RawURLEncoding.EncodeToString(b), now)
			if err == nil || errors.Is(err, ErrExpired) {
				t.Fatalf("%s: verified (%v) with claims %+v", what, err, c)
			}
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: err = %v, want ErrBadSignature or ErrMalformed", what, err)
			}
			if c != (Claims{}) {
				t.Fatalf("%s: refused token returned claims %+v", what, c)
			}
		}
		for i := range raw {
			for _, mask := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
				b := bytes.Clone(raw)
				b[i] ^= mask
				check("byte "+strconv.Itoa(i)+" ^ "+strconv.Itoa(int(mask)), b)
			}
		}
		for n := 0; n < len(raw); n++ {
			check("truncated to "+strconv.Itoa(n), raw[:n])
		}
		check("one byte appended", append(bytes.Clone(raw), 0))
		check("mac appended twice", append(bytes.Clone(raw), raw[len(raw)-macLen:]...))
		// Flipping the version byte is ErrMalformed (checked before the MAC).
		b := bytes.Clone(raw)
		b[0] = version + 1
		if _, err := s.Verify(base64.RawURLEncoding.EncodeToString(b), now); !errors.Is(err, ErrMalformed) {
			t.Errorf("other version: err = %v, want ErrMalformed", err)
		}
	}
}

// TestAckTokenTamperedString changes every character of the token string to
// every other base64url character. A change must not verify, unless it
// decodes to the very same bytes (the unused low bits of the last
// character, see TestAckTokenCanonicalEncoding), in which case it must carry
// the same claims.
func TestAckTokenTamperedString(t *testing.T) {
	s := newSigner(t, testKey(1, 32))
	now := time.Now()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, reply := range []string{replyV1, replyV2, replyV2NoRand} {
		tok := sign(t, s, Claims{Reply: reply, Expires: now.Add(time.Hour), AckWait: time.Minute})
		orig, _ := base64.RawURLEncoding.DecodeString(tok)
		for i := range len(tok) {
			for _, c := range alphabet {
				if byte(c) == tok[i] {
					continue
				}
				m := tok[:i] + string(c) + tok[i+1:]
				_, err := s.Verify(m, now)
				if err == nil {
					raw, _ := base64.RawURLEncoding.DecodeString(m)
					if !bytes.Equal(raw, orig) {
						t.Fatalf("token with char %d changed to %q verified with different bytes", i, c)
					}
					if i != len(tok)-1 {
						t.Fatalf("token with char %d (not the last) changed to %q verified", i, c)
					}
				} else if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("char %d changed to %q: err = %v", i, c, err)
				}
			}
		}
		for _, m := range []string{"", tok[:len(tok)-1], tok + "A", tok + "=", "=" + tok, strings.ToUpper(tok), " " + tok, tok + "\x00"} {
			if _, err := s.Verify(m, now); err == nil || errors.Is(err, ErrExpired) {
				t.Errorf("Verify(%q) verified", m)
			}
		}
		// Standard (not URL) base64 of the same bytes is not the token.
		std := base64.RawStdEncoding.EncodeToString(orig)
		if std != tok {
			if _, err := s.Verify(std, now); err == nil {
				t.Errorf("standard base64 of the token verified")
			}
		}
	}
}

// TestAckTokenCanonicalEncoding: a token verifies only in the exact form Sign
// produced it. Go's base64 decoder is lenient in two ways: without Strict()
// it ignores the unused low bits of the last character (so up to 15 other
// last characters decode to the same bytes), and even with Strict() it skips
// '\r' and '\n' anywhere in the input. Either way one token has many
// spellings that verify, which breaks any use of the token string as a key
// (replay or dedupe caches, logs, the AckResult.token echo).
func TestAckTokenCanonicalEncoding(t *testing.T) {
	s := newSigner(t, testKey(1, 32))
	now := time.Now()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	// Replies of three lengths cover the three values of len(raw) mod 3.
	for _, reply := range []string{replyV1, replyV1 + "5", replyV1 + "56"} {
		tok := sign(t, s, Claims{Reply: reply, Expires: now.Add(time.Hour), AckWait: time.Minute})
		var accepted []string
		for _, c := range alphabet {
			m := tok[:len(tok)-1] + string(c)
			if m == tok {
				continue
			}
			if _, err := s.Verify(m, now); err == nil {
				accepted = append(accepted, m[len(m)-3:])
			}
		}
		if len(accepted) > 0 {
			t.Errorf("reply of %d bytes: %d other spellings of the last character verify (…%s for …%s)", len(reply), len(accepted), accepted[0], tok[len(tok)-3:])
		}
		for _, m := range []string{tok + "\n", tok[:10] + "\r\n" + tok[10:]} {
			if _, err := s.Verify(m, now); err == nil {
				t.Errorf("reply of %d bytes: token with CR/LF inserted verifies: %q", len(reply), m)
			}
		}
	}
}

func TestAckTokenOtherKey(t *testing.T) {
	a := newSigner(t, testKey(1, 32))
	b := newSigner(t, testKey(2, 32))
	tok := sign(t, a, Claims{Reply: replyV1, Expires: time.Now().Add(time.Hour)})
	if _, err := b.Verify(tok, time.Now()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("token of key A verified by key B: err = %v, want ErrBadSignature", err)
	}
	// Even an expired token of another key is a bad signature, not expired:
	// the expiry of an unauthenticated token means nothing.
	old := sign(t, a, Claims{Reply: replyV1, Expires: time.Now().Add(-time.Hour)})
	if _, err := b.Verify(old, time.Now()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("expired token of another key: err = %v, want ErrBadSignature", err)
	}
}

func TestAckTokenKeyRotation(t *testing.T) {
	oldKey, newKey := testKey(10, 32), testKey(20, 48)
	now := time.Now()
	c := Claims{Reply: replyV2, Identity: "id", Expires: now.Add(time.Minute), AckWait: 2 * time.Second}

	oldTok := sign(t, newSigner(t, oldKey), c)

	// Step 1: every replica verifies both, still signs with the old key.
	step1 := newSigner(t, oldKey, newKey)
	if got := sign(t, step1, c); got != oldTok {
		t.Errorf("a signer whose first key is the old key signs differently")
	}
	// Step 2: the new key signs, the old one still verifies.
	step2 := newSigner(t, newKey, oldKey)
	got, err := step2.Verify(oldTok, now)
	if err != nil {
		t.Fatalf("old token after rotation: %v", err)
	}
	if got.Reply != c.Reply || got.Identity != c.Identity || got.AckWait != c.AckWait {
		t.Errorf("claims after rotation = %+v", got)
	}
	newTok := sign(t, step2, c)
	if newTok == oldTok {
		t.Fatal("rotated signer still signs with the old key")
	}
	if _, err := step1.Verify(newTok, now); err != nil {
		t.Errorf("step-1 replica refuses a step-2 token: %v", err)
	}
	if _, err := newSigner(t, newKey).Verify(newTok, now); err != nil {
		t.Errorf("new key alone refuses a new token: %v", err)
	}
	// Step 3: the old key is dropped; its tokens no longer verify.
	step3 := newSigner(t, newKey)
	if _, err := step3.Verify(oldTok, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old token after the old key was dropped: err = %v, want ErrBadSignature", err)
	}
	if _, err := newSigner(t, oldKey).Verify(newTok, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("new token verified by the old key alone: err = %v", err)
	}
}

func TestAckTokenInvalidKey(t *testing.T) {
	for _, tt := range []struct {
		name string
		keys [][]byte
	}{
		{"no key", nil},
		{"empty key", [][]byte{{}}},
		{"31 bytes", [][]byte{testKey(1, 31)}},
		{"second key short", [][]byte{testKey(1, 32), testKey(2, 16)}},
		{"nil second key", [][]byte{testKey(1, 32), nil}},
	} {
		s, err := New(tt.keys...)
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err = %v, want ErrInvalidKey", tt.name, err)
		}
		if s != nil {
			t.Errorf("%s: returned a signer", tt.name)
		}
	}
	for _, n := range []int{MinKeyLen, 64, 1000} {
		if _, err := New(testKey(1, n)); err != nil {
			t.Errorf("key of %d bytes: %v", n, err)
		}
	}
}

// TestAckTokenNewCopiesKeys: changing the caller's key slice after New changes
// nothing.
func TestAckTokenNewCopiesKeys(t *testing.T) {
	k := testKey(1, 32)
	s := newSigner(t, k)
	tok := sign(t, s, Claims{Reply: replyV1, Expires: time.Now().Add(time.Hour)})
	for i := range k {
		k[i] = 0
	}
	if _, err := s.Verify(tok, time.Now()); err != nil {
		t.Errorf("after zeroing the caller's key: %v", err)
	}
}

func TestAckTokenRandomKey(t *testing.T) {
	a, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != MinKeyLen || len(b) != MinKeyLen {
		t.Errorf("key lengths %d, %d, want %d", len(a), len(b), MinKeyLen)
	}
	if bytes.Equal(a, b) {
		t.Error("two random keys are equal")
	}
	if _, err := New(a); err != nil {
		t.Errorf("New(RandomKey()): %v", err)
	}
}

func TestAckTokenSignRefuses(t *testing.T) {
	s := newSigner(t, testKey(1, 32))
	exp := time.Now().Add(time.Hour)
	for _, reply := range []string{
		"",
		"evil.subject",
		"$JS.API.STREAM.DELETE.X",
		"$JS.ACK",
		"$JS.ACK.",
		"$js.ack.S.C.1.2.3.4.5",
		"$JS.ACK.S.C.1.2.3.4",          // too few tokens
		"$JS.ACK.S.C.1.2.3.4.5.6",      // 8: neither format
		"$JS.ACK.S.*.1.2.3.4.5",        // wildcard
		"$JS.ACK.S.C.1.2.3.4.>",        // wildcard
		"$JS.ACK.S.C.1.2.x.4.5",        // not a number
		" $JS.ACK.S.C.1.2.3.4.5",       // leading space
		"$JS.ACK.S.C.1.2.3.4.5\r\nPUB", // protocol injection
		"x$JS.ACK.S.C.1.2.3.4.5",
	} {
		tok, err := s.Sign(Claims{Reply: reply, Expires: exp})
		if !errors.Is(err, ErrMalformed) || tok != "" {
			t.Errorf("Sign(reply %q) = %q, %v; want ErrMalformed", reply, tok, err)
		}
	}
	long := "$JS.ACK.S." + strings.Repeat("c", maxField) + ".1.2.3.4.5"
	if _, err := s.Sign(Claims{Reply: long, Expires: exp}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Sign(reply of %d bytes): %v, want ErrMalformed", len(long), err)
	}
	if _, err := s.Sign(Claims{Reply: replyV1, Identity: strings.Repeat("i", maxField+1), Expires: exp}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Sign(identity of %d bytes): %v, want ErrMalformed", maxField+1, err)
	}
	// At the limit both fit.
	atLimit := "$JS.ACK.S." + strings.Repeat("c", maxField-len("$JS.ACK.S..1.2.3.4.5")) + ".1.2.3.4.5"
	tok, err := s.Sign(Claims{Reply: atLimit, Identity: strings.Repeat("i", maxField), Expires: exp})
	if err != nil {
		t.Fatalf("Sign at the field limits: %v", err)
	}
	if c, err := s.Verify(tok, time.Now()); err != nil || c.Reply != atLimit || len(c.Identity) != maxField {
		t.Errorf("Verify at the field limits: %v", err)
	}
	if len(tok) != maxToken {
		t.Errorf("token at the field limits is %d characters, want maxToken (%d)", len(tok), maxToken)
	}
	// Anything longer is refused before it is decoded.
	if _, err := s.Verify(tok+"AAAA", time.Now()); !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify(a token longer than any Sign writes): %v, want ErrMalformed", err)
	}
}

// TestAckTokenAuthenticButMalformed: a body signed with the right key whose
// layout is wrong (what a bug in Sign or a key leak would produce) is
// refused as malformed, never half-parsed.
func TestAckTokenAuthenticButMalformed(t *testing.T) {
	key := testKey(1, 32)
	s := newSigner(t, key)
	now := time.Now()
	body := func(identity, reply string, extra []byte, idLen, replyLen int) []byte {
		b := []byte{version}
		b = binary.BigEndian.AppendUint64(b, uint64(now.Add(time.Hour).UnixMilli()))
		b = binary.BigEndian.AppendUint32(b, 1000)
		b = binary.BigEndian.AppendUint16(b, uint16(idLen))
		b = append(b, identity...)
		b = binary.BigEndian.AppendUint16(b, uint16(replyLen))
		b = append(b, reply...)
		return append(b, extra...)
	}
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"trailing byte", body("", replyV1, []byte{0}, 0, len(replyV1))},
		{"reply length too long", body("", replyV1, nil, 0, len(replyV1)+1)},
		{"reply length too short", body("", replyV1, nil, 0, len(replyV1)-1)},
		{"identity length past the end", body("", replyV1, nil, 1000, len(replyV1))},
		{"reply not an ack subject", body("", "evil.subject", nil, 0, len("evil.subject"))},
		{"reply a JS API subject", body("", "$JS.API.STREAM.DELETE.X", nil, 0, len("$JS.API.STREAM.DELETE.X"))},
		{"reply with a wildcard", body("", "$JS.ACK.S.>.1.2.3.4.5", nil, 0, len("$JS.ACK.S.>.1.2.3.4.5"))},
	} {
		h := hmac.New(sha256.New, key)
		h.Write(tt.body)
		tok := base64.RawURLEncoding.EncodeToString(h.Sum(tt.body))
		c, err := s.Verify(tok, now)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tt.name, err)
		}
		if c.Reply != "" {
			t.Errorf("%s: returned reply %q", tt.name, c.Reply)
		}
	}
}

func TestAckTokenParseReply(t *testing.T) {
	ts := time.Unix(0, 1700000000000000000)
	valid := []struct {
		subject string
		want    Reply
	}{
		{replyV1, Reply{Stream: "S", Consumer: "C", Delivered: 1, StreamSeq: 2, ConsumerSeq: 3, Timestamp: ts, Pending: 4}},
		{replyV2, Reply{Stream: "S", Consumer: "C", Delivered: 1, StreamSeq: 2, ConsumerSeq: 3, Timestamp: ts, Pending: 4}},
		{"$JS.ACK._.ACCHASH.S.C.1.2.3.1700000000000000000.4", Reply{Stream: "S", Consumer: "C", Delivered: 1, StreamSeq: 2, ConsumerSeq: 3, Timestamp: ts, Pending: 4}},
		{replyV2NoRand, Reply{Domain: "hub", Stream: "ORDERS", Consumer: "worker-1", Delivered: 7, StreamSeq: 1000, ConsumerSeq: 999, Timestamp: time.Unix(0, 1700000000123456789), Pending: 0}},
		{"$JS.ACK.my-stream.my_consumer.0.0.0.0.0", Reply{Stream: "my-stream", Consumer: "my_consumer", Timestamp: time.Unix(0, 0)}},
		{"$JS.ACK.S.C.18446744073709551615.1.1.1.18446744073709551615", Reply{Stream: "S", Consumer: "C", Delivered: 1<<64 - 1, StreamSeq: 1, ConsumerSeq: 1, Timestamp: time.Unix(0, 1), Pending: 1<<64 - 1}},
	}
	for _, tt := range valid {
		got, err := ParseReply(tt.subject)
		if err != nil {
			t.Errorf("ParseReply(%q): %v", tt.subject, err)
			continue
		}
		if !got.Timestamp.Equal(tt.want.Timestamp) {
			t.Errorf("ParseReply(%q).Timestamp = %v, want %v", tt.subject, got.Timestamp, tt.want.Timestamp)
		}
		got.Timestamp, tt.want.Timestamp = time.Time{}, time.Time{}
		if got != tt.want {
			t.Errorf("ParseReply(%q) =\n%+v, want\n%+v", tt.subject, got, tt.want)
		}
	}

	invalid := []string{
		"",
		"$JS.ACK",
		"$JS.ACK.",
		"$JS.ACK.S",
		"$JS.API.CONSUMER.MSG.NEXT.S.C",
		"_INBOX.abc",
		"evil.subject",
		"$JS.ACK.S.C.1.2.3.4",                      // 6 tokens after the prefix
		"$JS.ACK.S.C.1.2.3.4.5.6",                  // 8: neither format
		"$JS.ACK.S.C.1.2.3.4.5.",                   // empty last token
		"$JS.ACK..C.1.2.3.4.5",                     // empty stream
		"$JS.ACK.S..1.2.3.4.5",                     // empty consumer
		"$JS.ACK.S.C.1..3.4.5",                     // empty number
		"$JS.ACK.S.C.1.2.3.4.5.",                   // trailing dot
		"$JS.ACK..S.C.1.2.3.4.5",                   // leading empty
		"$JS.ACK.*.C.1.2.3.4.5",                    // wildcard stream
		"$JS.ACK.S.>.1.2.3.4.5",                    // full wildcard
		"$JS.ACK.S.C*.1.2.3.4.5",                   // partial wildcard
		"$JS.ACK.S.C.1.2.3.4.>",                    // wildcard at the end
		"$JS.ACK.S C.C.1.2.3.4.5",                  // space
		"$JS.ACK.S\tC.C.1.2.3.4.5",                 // tab
		"$JS.ACK.S.C.1.2.3.4.5\r\n",                // CR LF
		"$JS.ACK.S.C.x.2.3.4.5",                    // delivered not numeric
		"$JS.ACK.S.C.1.-2.3.4.5",                   // negative
		"$JS.ACK.S.C.1.+2.3.4.5",                   // sign
		"$JS.ACK.S.C.1.2.0x3.4.5",                  // hex
		"$JS.ACK.S.C.1.2.3.4.5e3",                  // exponent
		"$JS.ACK.S.C.1.2.3.4.18446744073709551616", // overflow
		"$JS.ACK._.ACCHASH.S.C.1.2.3.x.4",          // v2 timestamp not numeric
		"$JS.ACK._.ACCHASH.S.C.1.2.3.4",            // 8 after the prefix
		"$JS.ACK._.ACCHASH.S.C.1.2.3.4.5.",         // v2 with an empty random token
		"$js.ack.S.C.1.2.3.4.5",                    // prefix is case-sensitive
		"x$JS.ACK.S.C.1.2.3.4.5",
	}
	for _, s := range invalid {
		r, err := ParseReply(s)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseReply(%q) = %+v, %v; want ErrMalformed", s, r, err)
		}
	}
}

// fuzzSigner is the fixed signer of FuzzVerify; its seed tokens in
// testdata/fuzz/FuzzVerify were produced by fuzzSeedTokens.
func fuzzSigner(t testing.TB) *Signer {
	return newSigner(t, testKey(7, 32))
}

// fuzzSeedTokens are real tokens of fuzzSigner, valid at fixedNow (except
// the expired one).
func fuzzSeedTokens(t testing.TB) []string {
	s := fuzzSigner(t)
	return []string{
		sign(t, s, Claims{Reply: replyV1, Expires: fixedNow.Add(time.Hour), AckWait: 30 * time.Second}),
		sign(t, s, Claims{Reply: replyV2, Identity: "alice", Expires: fixedNow.Add(time.Minute), AckWait: time.Second}),
		sign(t, s, Claims{Reply: replyV2NoRand, Expires: fixedNow.Add(time.Second), AckWait: time.Hour}),
		sign(t, s, Claims{Reply: replyV1, Expires: fixedNow.Add(-time.Second), AckWait: time.Second}),
	}
}

// TestAckTokenFuzzSeedsAreCurrent keeps the checked-in seeds in step with the
// token format: each real seed still verifies (or is expired) at fixedNow.
func TestAckTokenFuzzSeedsAreCurrent(t *testing.T) {
	s := fuzzSigner(t)
	for i, tok := range fuzzSeedTokens(t) {
		_, err := s.Verify(tok, fixedNow)
		if want := i == 3; errors.Is(err, ErrExpired) != want || (!want && err != nil) {
			t.Errorf("seed %d: Verify = %v", i, err)
		}
	}
}

// FuzzVerify: arbitrary input never panics; every error wraps exactly one
// sentinel; anything that verifies (even expired) carries exactly the bytes
// Sign produces for its claims (no forgery), with claims consistent with
// its reply.
func FuzzVerify(f *testing.F) {
	for _, tok := range fuzzSeedTokens(f) {
		f.Add(tok)
	}
	f.Add("")
	f.Add("AQ")
	f.Add("not a token")
	f.Add(base64.RawURLEncoding.EncodeToString(make([]byte, 1+8+4+2+2+macLen)))
	s := fuzzSigner(f)
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok, fixedNow)
		if err != nil {
			if w := wrapped(err); len(w) != 1 {
				t.Fatalf("Verify(%q) error %v wraps %v, want exactly one sentinel", tok, err, w)
			}
			if !errors.Is(err, ErrExpired) {
				if c != (Claims{}) {
					t.Fatalf("refused token returned claims %+v", c)
				}
				return
			}
		}
		// Authentic: the bytes must be what Sign writes for these claims.
		again, serr := s.Sign(c)
		if serr != nil {
			t.Fatalf("claims %+v of a verified token do not sign: %v", c, serr)
		}
		want, _ := base64.RawURLEncoding.DecodeString(again)
		got, _ := base64.RawURLEncoding.DecodeString(tok)
		if !bytes.Equal(got, want) {
			t.Fatalf("Verify(%q) accepted bytes Sign did not produce (%q)", tok, again)
		}
		r, perr := ParseReply(c.Reply)
		if perr != nil || r.Stream != c.Stream || r.Consumer != c.Consumer || r.StreamSeq != c.StreamSeq ||
			r.ConsumerSeq != c.ConsumerSeq || r.Delivered != c.Delivered {
			t.Fatalf("claims %+v disagree with their reply (%+v, %v)", c, r, perr)
		}
		if errors.Is(err, ErrExpired) == fixedNow.Before(c.Expires) {
			t.Fatalf("expired = %v for Expires %v at %v", err, c.Expires, fixedNow)
		}
	})
}

// FuzzParseReply: never panics; an accepted subject is a $JS.ACK. subject of
// 7 or at least 9 non-empty, wildcard- and space-free tokens whose stream and
// consumer come back, and it signs and verifies.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{replyV1, replyV2, replyV2NoRand, "$JS.ACK.S.C.1.2.3.4", "$JS.ACK.*.C.1.2.3.4.5", "evil.subject", "$JS.ACK.S.C.1.2.3.4.99999999999999999999", ""} {
		f.Add(s)
	}
	s := fuzzSigner(f)
	f.Fuzz(func(t *testing.T, subject string) {
		r, err := ParseReply(subject)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseReply(%q) error %v does not wrap ErrMalformed", subject, err)
			}
			return
		}
		if !strings.HasPrefix(subject, "$JS.ACK.") {
			t.Fatalf("accepted %q without the $JS.ACK. prefix", subject)
		}
		toks := strings.Split(strings.TrimPrefix(subject, "$JS.ACK."), ".")
		if n := len(toks); n != 7 && n < 9 {
			t.Fatalf("accepted %q with %d tokens", subject, n)
		}
		for _, tok := range toks {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
				t.Fatalf("accepted %q with token %q", subject, tok)
			}
		}
		if r.Stream == "" || r.Consumer == "" || !strings.Contains(subject, "."+r.Stream+"."+r.Consumer+".") {
			t.Fatalf("ParseReply(%q) = %+v: stream/consumer not from the subject", subject, r)
		}
		// The numbers are what strconv reads.
		first := 2
		if len(toks) >= 9 {
			first = 4
		}
		for i, got := range []uint64{r.Delivered, r.StreamSeq, r.ConsumerSeq, uint64(r.Timestamp.UnixNano()), r.Pending} {
			if want, err := strconv.ParseUint(toks[first+i], 10, 64); err != nil || got != want {
				t.Fatalf("ParseReply(%q): number %d = %d, strconv reads %d, %v", subject, i, got, want, err)
			}
		}
		if len(subject) > maxField {
			return
		}
		tok, err := s.Sign(Claims{Reply: subject, Expires: fixedNow.Add(time.Hour)})
		if err != nil {
			t.Fatalf("Sign of accepted reply %q: %v", subject, err)
		}
		c, err := s.Verify(tok, fixedNow)
		if err != nil || c.Reply != subject || c.StreamSeq != r.StreamSeq {
			t.Fatalf("round trip of %q: %+v, %v", subject, c, err)
		}
	})
}

// FuzzDecimal: decimal accepts exactly what strconv.ParseUint(s, 10, 64)
// accepts, with the same value.
func FuzzDecimal(f *testing.F) {
	for _, s := range []string{"0", "007", "18446744073709551615", "18446744073709551616", "99999999999999999999", "", "+1", "-1", "1_0", "١", "12a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := decimal(s)
		want, err := strconv.ParseUint(s, 10, 64)
		if ok != (err == nil) || got != want && ok {
			t.Fatalf("decimal(%q) = %d, %v; strconv: %d, %v", s, got, ok, want, err)
		}
	})
}
