// Package perm decides whether an identity may use a NATS subject, with the
// semantics nats-server applies to a user's own permissions: a subject is
// permitted when the allow list is empty or one of its patterns matches,
// and no pattern of the deny list matches. Deny wins.
//
// Patterns are NATS subjects that may hold wildcards: '*' stands for exactly
// one token and '>', only as the last token, for one or more tokens. A
// [Matcher] is compiled once from a [Set] and then answers two questions:
// [Matcher.Allows] for a literal subject (a publish), and
// [Matcher.AllowsAll] for a wildcard filter (a subscription), which is
// permitted only when every subject it can match is.
//
// Matching is done by hand over pre-split tokens; Allows does not allocate.
package perm

import (
	"errors"
	"fmt"
	"strings"
)

// Set is one permission: allow and deny subject patterns with NATS
// wildcards ('*' one token, '>' one or more trailing tokens). An empty
// Allow, nil or not, permits every subject that Deny does not name. (For
// publish permissions nats-server reads a non-nil but empty allow list as
// allowing nothing; a JSON "allow": [] here does not.)
type Set struct {
	// Allow lists the patterns a subject must match one of; empty allows all.
	Allow []string `json:"allow,omitempty"`
	// Deny lists the patterns a subject must match none of.
	Deny []string `json:"deny,omitempty"`
}

// ErrInvalidPattern is the error, wrapped with the offending pattern, that
// Compile returns for a pattern that is not a valid NATS subject.
var ErrInvalidPattern = errors.New("perm: invalid pattern")

// Matcher answers permission questions for one compiled [Set]. It is
// immutable and so safe for concurrent use. A nil *Matcher, like the zero
// Matcher, allows nothing.
type Matcher struct {
	// allowAll is set when Allow is empty or holds ">": only Deny restricts.
	allowAll bool
	// allow and deny hold every pattern, split into tokens, for AllowsAll.
	allow, deny []pattern
	// allowLit and denyLit hold the literal patterns, for Allows.
	allowLit, denyLit map[string]struct{}
	// allowWild and denyWild hold the patterns with wildcards, for Allows.
	allowWild, denyWild []pattern
}

// pattern is a valid subject split into its tokens.
type pattern struct {
	toks []string
	// fwc is set when the last token is '>'.
	fwc bool
	// literal is set when no token is a wildcard.
	literal bool
}

const (
	sep = '.'
	pwc = "*"
	fwc = ">"
)

// Compile validates the patterns (valid NATS subjects: non-empty tokens, no
// whitespace, '*' and '>' only as whole tokens, '>' only last) and returns a
// matcher for them. An invalid pattern is an error wrapping
// [ErrInvalidPattern] that names it. Validity is exactly nats-server's
// IsValidSubject; where nats-server logs an invalid permission and skips
// it, Compile refuses the whole Set.
func Compile(s Set) (*Matcher, error) {
	m := &Matcher{allowAll: len(s.Allow) == 0}
	for _, p := range s.Allow {
		pt, err := compilePattern("allow", p)
		if err != nil {
			return nil, err
		}
		if len(pt.toks) == 1 && pt.fwc {
			m.allowAll = true
		}
		m.allow = append(m.allow, pt)
		if pt.literal {
			if m.allowLit == nil {
				m.allowLit = make(map[string]struct{})
			}
			m.allowLit[p] = struct{}{}
		} else {
			m.allowWild = append(m.allowWild, pt)
		}
	}
	for _, p := range s.Deny {
		pt, err := compilePattern("deny", p)
		if err != nil {
			return nil, err
		}
		m.deny = append(m.deny, pt)
		if pt.literal {
			if m.denyLit == nil {
				m.denyLit = make(map[string]struct{})
			}
			m.denyLit[p] = struct{}{}
		} else {
			m.denyWild = append(m.denyWild, pt)
		}
	}
	if m.allowAll {
		// Allow patterns are never consulted; drop them.
		m.allow, m.allowLit, m.allowWild = nil, nil, nil
	}
	return m, nil
}

// compilePattern validates and splits one pattern of the named list.
func compilePattern(list, p string) (pattern, error) {
	if why := invalid(p); why != "" {
		return pattern{}, fmt.Errorf("%w: %s %q: %s", ErrInvalidPattern, list, p, why)
	}
	pt := pattern{toks: strings.Split(p, string(sep)), literal: true}
	for _, t := range pt.toks {
		if t == pwc || t == fwc {
			pt.literal = false
		}
	}
	pt.fwc = pt.toks[len(pt.toks)-1] == fwc
	return pt, nil
}

// invalid says why s is not a valid NATS subject, or "" when it is. It
// agrees with nats-server's IsValidSubject.
func invalid(s string) string {
	if s == "" {
		return "empty"
	}
	start, sawFWC := 0, false
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case ' ', '\t', '\n', '\r', '\f':
				return "contains whitespace"
			case sep:
			default:
				continue
			}
		}
		if sawFWC {
			return "'>' must be the last token"
		}
		if i == start {
			return "empty token"
		}
		if i-start == 1 && s[start] == '>' {
			sawFWC = true
		}
		start = i + 1
	}
	return ""
}

// literalTokens reports whether s is a valid literal subject (valid, and no
// token is a wildcard) and, if so, how many tokens it has.
func literalTokens(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case ' ', '\t', '\n', '\r', '\f':
				return 0, false
			case sep:
			default:
				continue
			}
		}
		switch i - start {
		case 0:
			return 0, false
		case 1:
			if c := s[start]; c == '*' || c == '>' {
				return 0, false
			}
		}
		n++
		start = i + 1
	}
	return n, true
}

// Allows reports whether a literal subject (no wildcards) is permitted, as
// nats-server decides a publish: allowed when (Allow is empty or the
// subject matches an Allow pattern) and it matches no Deny pattern. Deny
// wins. A subject that is not a valid literal subject (empty, an empty
// token, whitespace, or a wildcard token) is never allowed.
func (m *Matcher) Allows(subject string) bool {
	if m == nil {
		return false
	}
	n, ok := literalTokens(subject)
	if !ok {
		return false
	}
	return m.allowsLiteral(subject, n)
}

// allowsLiteral is Allows for a valid literal subject of n tokens.
func (m *Matcher) allowsLiteral(subject string, n int) bool {
	if !m.allowAll {
		_, ok := m.allowLit[subject]
		if !ok && !anyMatches(m.allowWild, subject, n) {
			return false
		}
	}
	if _, ok := m.denyLit[subject]; ok {
		return false
	}
	return !anyMatches(m.denyWild, subject, n)
}

// anyMatches reports whether one of pats matches the valid literal subject
// of n tokens.
func anyMatches(pats []pattern, subject string, n int) bool {
	for i := range pats {
		if pats[i].matches(subject, n) {
			return true
		}
	}
	return false
}

// matches reports whether p matches the valid literal subject of n tokens.
func (p *pattern) matches(subject string, n int) bool {
	if p.fwc {
		if n < len(p.toks) {
			return false
		}
	} else if n != len(p.toks) {
		return false
	}
	rest := subject
	for _, pt := range p.toks {
		if pt == fwc {
			return true // n >= len(p.toks): at least one token is left
		}
		tok := rest
		if i := strings.IndexByte(rest, sep); i >= 0 {
			tok, rest = rest[:i], rest[i+1:]
		}
		if pt != pwc && pt != tok {
			return false
		}
	}
	return true
}

// AllowsAll reports whether every subject matching the wildcard pattern
// filter is permitted: filter is a subset of some Allow pattern (or Allow
// is empty) and it intersects no Deny pattern. A literal filter gets the
// same answer as Allows; an invalid filter is never allowed.
//
// It is meant for subscription filters, and it is stricter than
// nats-server: the server admits a subscription whose subject, read as a
// literal, matches an Allow pattern and no Deny pattern (so "a.>" passes
// an allow of "a.*", and "a.*" passes a deny of "a.b"), and then drops
// denied messages at delivery. AllowsAll instead refuses a filter unless
// no subject it can match is refused. It also does not treat the union of
// several Allow patterns as covering a filter that no single one covers.
func (m *Matcher) AllowsAll(filter string) bool {
	if m == nil || invalid(filter) != "" {
		return false
	}
	if n, ok := literalTokens(filter); ok {
		return m.allowsLiteral(filter, n)
	}
	var buf [16]string
	toks := split(buf[:0], filter)
	if !m.allowAll {
		ok := false
		for i := range m.allow {
			if subset(toks, m.allow[i].toks) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range m.deny {
		if intersects(toks, m.deny[i].toks) {
			return false
		}
	}
	return true
}

// split appends the tokens of s to toks.
func split(toks []string, s string) []string {
	for {
		i := strings.IndexByte(s, sep)
		if i < 0 {
			return append(toks, s)
		}
		toks = append(toks, s[:i])
		s = s[i+1:]
	}
}

// subset reports whether every subject matching the valid pattern a also
// matches the valid pattern b (a ⊆ b).
func subset(a, b []string) bool {
	for i, tb := range b {
		if i >= len(a) {
			return false // b needs more tokens than a can have
		}
		ta := a[i]
		switch {
		case tb == fwc:
			return true // a has one or more tokens left; '>' takes them all
		case ta == fwc:
			return false // a can have more tokens than b, or other ones
		case tb == pwc:
			// any single token of a
		case ta != tb: // a '*' in a is not in a literal of b
			return false
		}
	}
	return len(a) == len(b)
}

// intersects reports whether some subject matches both valid patterns a
// and b (a ∩ b ≠ ∅).
func intersects(a, b []string) bool {
	for i := 0; ; i++ {
		if i == len(a) || i == len(b) {
			return len(a) == len(b)
		}
		ta, tb := a[i], b[i]
		if ta == fwc || tb == fwc {
			return true // the other has at least one token here, all of any value
		}
		if ta != pwc && tb != pwc && ta != tb {
			return false
		}
	}
}

// Intersects reports whether some subject matches both patterns a and b
// (wildcards allowed): "_INBOX.>" intersects ">", "*.>" and "_INBOX.*.x",
// not "_INBOX" or "inbox.>". An invalid pattern intersects nothing. It is
// the overlap of subject spaces, not of their text: use it where a pattern
// must stay clear of a reserved space.
func Intersects(a, b string) bool {
	if invalid(a) != "" || invalid(b) != "" {
		return false
	}
	var bufA, bufB [16]string
	return intersects(split(bufA[:0], a), split(bufB[:0], b))
}
