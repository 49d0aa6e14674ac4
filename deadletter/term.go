package deadletter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// The TERM reason the bridge sends JetStream, so that the advisory path
// (which sees only the advisory's reason) can tell who terminated a
// message through the bridge, and that the bridge has copied it already:
//
//	[jetway by="alice" copied sig=<22 chars>] the client's reason
//
// The signature is an HMAC-SHA256 (16 bytes, base64url) under a key
// derived from the bridge's ack keys, over the message (stream, consumer,
// stream sequence), the identity, the copied flag and the client's reason:
// a native client, which can send any +TERM reason it likes for a message
// it holds, cannot forge it, nor replay one seen in another advisory. The
// bridge always writes the prefix (the client's reason follows it), so a
// client's own "[jetway …" text is never read as one. A reason without a
// valid prefix is a native client's: no identity.

const (
	termPrefix = "[jetway by="
	sigLen     = 22 // base64url, unpadded, of 16 bytes
)

// termKeys derives the signing keys from the ack keys (the first signs,
// all verify).
func termKeys(ackKeys [][]byte) [][]byte {
	out := make([][]byte, 0, len(ackKeys))
	for _, k := range ackKeys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte("jetway dead-letter term reason v1"))
		out = append(out, m.Sum(nil))
	}
	return out
}

func termMAC(key []byte, stream, consumer string, seq uint64, identity string, copied bool, reason string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range []string{stream, consumer, strconv.FormatUint(seq, 10), identity, strconv.FormatBool(copied), reason} {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// encodeTerm is the reason sent with +TERM.
func encodeTerm(key []byte, stream, consumer string, seq uint64, identity string, copied bool, reason string) string {
	var b strings.Builder
	b.WriteString(termPrefix)
	b.WriteString(strconv.QuoteToASCII(identity))
	if copied {
		b.WriteString(" copied")
	}
	b.WriteString(" sig=")
	b.WriteString(termMAC(key, stream, consumer, seq, identity, copied, reason))
	b.WriteString("]")
	if reason != "" {
		b.WriteString(" ")
		b.WriteString(reason)
	}
	return b.String()
}

// termInfo is what a TERM reason says.
type termInfo struct {
	identity string
	copied   bool
	// signed: the prefix verified; identity and copied are the bridge's.
	signed bool
	// reason is the client's reason (the whole reason when unsigned).
	reason string
}

// decodeTerm reads an advisory's reason: the bridge's signed prefix when
// it verifies under one of keys for this message, else the reason as a
// native client sent it.
func decodeTerm(keys [][]byte, stream, consumer string, seq uint64, raw string) termInfo {
	plain := termInfo{reason: raw}
	rest, ok := strings.CutPrefix(raw, termPrefix)
	if !ok {
		return plain
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return plain
	}
	identity, err := strconv.Unquote(q)
	if err != nil {
		return plain
	}
	rest = rest[len(q):]
	copied := false
	if r, ok := strings.CutPrefix(rest, " copied"); ok {
		copied, rest = true, r
	}
	rest, ok = strings.CutPrefix(rest, " sig=")
	if !ok || len(rest) < sigLen+1 || rest[sigLen] != ']' {
		return plain
	}
	sig, rest := rest[:sigLen], rest[sigLen+1:]
	reason := ""
	if rest != "" {
		if reason, ok = strings.CutPrefix(rest, " "); !ok {
			return plain
		}
	}
	for _, k := range keys {
		if hmac.Equal([]byte(sig), []byte(termMAC(k, stream, consumer, seq, identity, copied, reason))) {
			return termInfo{identity: identity, copied: copied, signed: true, reason: reason}
		}
	}
	return plain
}
