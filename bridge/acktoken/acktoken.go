// Package acktoken signs and verifies ack tokens: opaque, URL-safe strings
// that let any bridge replica holding the key acknowledge a message
// delivered by another, with no state kept between the two.
//
// A token binds the JetStream ack reply subject of one delivery, the
// identity it was issued to, the consumer's ack wait for that delivery and
// an expiry at the ack deadline, under an HMAC-SHA256 of a configured key.
// Verification accepts any of the configured keys, so keys can be rotated:
// add the new key first, then make it the signing key, then drop the old.
package acktoken

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"strings"
	"sync"
	"time"
)

// Errors of Verify. Every failure wraps exactly one.
var (
	// ErrMalformed is a string that is not a token of this version.
	ErrMalformed = errors.New("acktoken: malformed token")
	// ErrBadSignature is a token no configured key signed (forged or
	// tampered with).
	ErrBadSignature = errors.New("acktoken: bad signature")
	// ErrExpired is an authentic token past its ack deadline.
	ErrExpired = errors.New("acktoken: token expired")
	// ErrInvalidKey is a key shorter than MinKeyLen.
	ErrInvalidKey = errors.New("acktoken: invalid key")
)

// MinKeyLen is the shortest key accepted, in bytes.
const MinKeyLen = 32

const (
	version  = 1
	macLen   = sha256.Size
	maxField = 1 << 10
)

// maxToken is the longest token Sign writes (both fields at maxField).
var maxToken = base64.RawURLEncoding.EncodedLen(1 + 8 + 4 + 2 + maxField + 2 + maxField + macLen)

// strictEncoding decodes tokens: one spelling per token (no non-zero
// padding bits).
var strictEncoding = base64.RawURLEncoding.Strict()

// Claims is what a token says about one delivery.
type Claims struct {
	// Reply is the JetStream ack subject of the delivery ($JS.ACK.…).
	Reply string
	// Identity is who the token was issued to ("" when no client auth).
	Identity string
	// Expires is the ack deadline.
	Expires time.Time
	// AckWait is the consumer's ack wait for this delivery, used to extend
	// the deadline on an in-progress ack.
	AckWait time.Duration

	// The delivery, parsed from Reply.
	Stream, Consumer       string
	StreamSeq, ConsumerSeq uint64
	Delivered              uint64
}

// Signer signs with its first key and verifies with any of them. It is
// safe for concurrent use.
type Signer struct {
	keys [][]byte
	macs []*sync.Pool // per key: reusable *macState (hmac.New allocates)
}

// macState is an HMAC state of one key and scratch space for a token:
// Sign builds the body and its MAC there, then the encoding, and
// allocates only the string it returns; Verify decodes the token there
// and computes the MACs to compare. Nothing returned refers to it.
type macState struct {
	h       hash.Hash
	raw     []byte
	encoded []byte
}

// New returns a Signer; keys[0] signs. Every key must be at least MinKeyLen
// bytes of secret randomness shared by all replicas.
func New(keys ...[]byte) (*Signer, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key", ErrInvalidKey)
	}
	s := &Signer{}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("%w: key %d is %d bytes, want at least %d", ErrInvalidKey, i, len(k), MinKeyLen)
		}
		key := append([]byte(nil), k...)
		s.keys = append(s.keys, key)
		s.macs = append(s.macs, &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key)} }})
	}
	return s, nil
}

// RandomKey returns a fresh random key of MinKeyLen bytes.
func RandomKey() ([]byte, error) {
	k := make([]byte, MinKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("acktoken: random key: %w", err)
	}
	return k, nil
}

// Sign returns the token of c. Reply must be a JetStream ack subject.
func (s *Signer) Sign(c Claims) (string, error) {
	if _, err := ParseReply(c.Reply); err != nil {
		return "", err
	}
	if len(c.Reply) > maxField || len(c.Identity) > maxField {
		return "", fmt.Errorf("%w: field too long", ErrMalformed)
	}
	st := s.macs[0].Get().(*macState)
	defer s.macs[0].Put(st)
	buf := st.raw[:0]
	buf = append(buf, version)
	buf = binary.BigEndian.AppendUint64(buf, uint64(c.Expires.UnixMilli()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(min(c.AckWait.Milliseconds(), 1<<32-1)))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(c.Identity)))
	buf = append(buf, c.Identity...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(c.Reply)))
	buf = append(buf, c.Reply...)
	st.h.Reset()
	st.h.Write(buf)
	buf = st.h.Sum(buf)
	st.raw = buf
	st.encoded = base64.RawURLEncoding.AppendEncode(st.encoded[:0], buf)
	return string(st.encoded), nil
}

// Verify checks a token's signature and expiry at now and returns its
// claims. A token that is authentic but expired returns its claims and an
// error wrapping ErrExpired.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	// One spelling per token: the strict decoder refuses non-zero padding
	// bits, and CR/LF (which the decoder would skip) are refused here.
	if strings.IndexByte(token, '\r') >= 0 || strings.IndexByte(token, '\n') >= 0 {
		return Claims{}, ErrMalformed
	}
	if len(token) > maxToken {
		return Claims{}, ErrMalformed
	}
	st := s.macs[0].Get().(*macState)
	defer s.macs[0].Put(st)
	raw, err := strictEncoding.AppendDecode(st.raw[:0], []byte(token))
	st.raw = raw[:0]
	if err != nil || len(raw) < 1+8+4+2+2+macLen || raw[0] != version {
		return Claims{}, ErrMalformed
	}
	body, sum := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	ok := false
	for i := range s.keys {
		st.encoded = s.mac(i, st.encoded[:0], body)
		if hmac.Equal(sum, st.encoded) {
			ok = true
			break
		}
	}
	if !ok {
		return Claims{}, ErrBadSignature
	}
	// Authentic from here on: the layout was written by Sign.
	var c Claims
	p := body[1:]
	c.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(p)))
	c.AckWait = time.Duration(binary.BigEndian.Uint32(p[8:])) * time.Millisecond
	p = p[12:]
	field := func() (string, bool) {
		if len(p) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+n {
			return "", false
		}
		f := string(p[2 : 2+n])
		p = p[2+n:]
		return f, true
	}
	var ok1, ok2 bool
	c.Identity, ok1 = field()
	c.Reply, ok2 = field()
	if !ok1 || !ok2 || len(p) != 0 {
		return Claims{}, ErrMalformed
	}
	m, err := ParseReply(c.Reply)
	if err != nil {
		return Claims{}, err
	}
	c.Stream, c.Consumer, c.StreamSeq, c.ConsumerSeq, c.Delivered = m.Stream, m.Consumer, m.StreamSeq, m.ConsumerSeq, m.Delivered
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	return c, nil
}

// mac appends the HMAC of data under key i to dst.
func (s *Signer) mac(i int, dst, data []byte) []byte {
	st := s.macs[i].Get().(*macState)
	st.h.Reset()
	st.h.Write(data)
	dst = st.h.Sum(dst)
	s.macs[i].Put(st)
	return dst
}

// Reply is the delivery a JetStream ack subject describes.
type Reply struct {
	Domain                 string
	Stream, Consumer       string
	Delivered              uint64
	StreamSeq, ConsumerSeq uint64
	Timestamp              time.Time
	Pending                uint64
}

// ParseReply parses a JetStream ack reply subject, in the original form
// $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> or
// the newer one with domain and account hash after $JS.ACK. (nats.go keeps
// its parser internal, so this mirrors it.)
func ParseReply(subject string) (Reply, error) {
	// One pass over the bytes, splitting and checking the tokens, and a
	// digit loop for the numbers, without allocating: this runs up to
	// three times per delivered message (converting it, signing its token,
	// verifying the token), and with strconv.ParseUint and a second pass
	// per token it was 9 % of the bridge's CPU in Subscribe + Ack.
	const prefix = "$JS.ACK."
	if !strings.HasPrefix(subject, prefix) {
		return Reply{}, fmt.Errorf("%w: not a JetStream ack subject", ErrMalformed)
	}
	rest := subject[len(prefix):]
	var ends [12]int // where each token ends in rest
	n, start := 0, 0
	for i := 0; i <= len(rest); i++ {
		if i < len(rest) {
			switch subjectByte[rest[i]] {
			case plain:
				continue
			case bad:
				return Reply{}, fmt.Errorf("%w: bad ack subject token", ErrMalformed)
			}
		}
		if i == start {
			return Reply{}, fmt.Errorf("%w: bad ack subject token", ErrMalformed)
		}
		if n == len(ends) {
			return Reply{}, fmt.Errorf("%w: ack subject has too many tokens", ErrMalformed)
		}
		ends[n], n, start = i, n+1, i+1
	}
	tok := func(k int) string {
		from := 0
		if k > 0 {
			from = ends[k-1] + 1
		}
		return rest[from:ends[k]]
	}
	var r Reply
	first := 0 // of the five numbers
	switch {
	case n == 7:
		r.Stream, r.Consumer, first = tok(0), tok(1), 2
	case n >= 9:
		// domain ("_" for none), account hash, stream, consumer, ... and
		// possibly a random token at the end.
		if d := tok(0); d != "_" {
			r.Domain = d
		}
		r.Stream, r.Consumer, first = tok(2), tok(3), 4
	default:
		return Reply{}, fmt.Errorf("%w: ack subject has %d tokens", ErrMalformed, n+2)
	}
	var nums [5]uint64
	for i := range nums {
		v, ok := decimal(tok(first + i))
		if !ok {
			return Reply{}, fmt.Errorf("%w: ack subject number %q", ErrMalformed, tok(first+i))
		}
		nums[i] = v
	}
	r.Delivered, r.StreamSeq, r.ConsumerSeq = nums[0], nums[1], nums[2]
	r.Timestamp = time.Unix(0, int64(nums[3]))
	r.Pending = nums[4]
	return r, nil
}

// Classes of a subject's bytes for ParseReply.
const (
	plain = iota
	dot
	bad // a wildcard or whitespace
)

var subjectByte = [256]uint8{'.': dot, '*': bad, '>': bad, ' ': bad, '\t': bad, '\r': bad, '\n': bad}

// decimal parses what strconv.ParseUint(s, 10, 64) accepts: one or more
// ASCII digits, at most math.MaxUint64.
func decimal(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var v uint64
	if len(s) < 20 { // 19 digits cannot overflow
		for i := 0; i < len(s); i++ {
			d := uint64(s[i] - '0')
			if d > 9 {
				return 0, false
			}
			v = v*10 + d
		}
		return v, true
	}
	for i := 0; i < len(s); i++ {
		d := uint64(s[i] - '0')
		if d > 9 || v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
