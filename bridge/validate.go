package bridge

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jetway-dev/jetway/auth/perm"
)

// Limits of names and subjects, as nats-server enforces them.
const (
	maxNameLen    = 255
	maxSubjectLen = 1024
	maxHeaderName = 255
	maxMsgIDLen   = 255
)

// reservedPrefixes are subject spaces a client may never publish to: the
// JetStream API and acks ($JS), the system account ($SYS), Raft ($NRG),
// service discovery ($SRV) and reply inboxes. Publishing to $JS.API.… would
// otherwise run admin operations through Publish. Key-value ($KV) and
// object-store ($O) subjects are ordinary stream subjects and stay allowed.
// _JETWAY. is the bridges' own (FleetPrefix): the session views' requests
// and answers, which a client must neither send nor forge.
//
// $KV.JETWAY_PUSH. is the push subscriptions' bucket (PushBucket): a
// record written there is delivered on the bridge's own connection, so
// whoever could publish one would read any stream through its endpoint.
var reservedPrefixes = []string{"$JS.", "$JSC.", "$SYS.", "$NRG.", "$SRV.", "$MQTT.", "$GNR.", "$GR.", "$LDS.", "_INBOX.", "_R_.", FleetPrefix, "$KV." + PushBucket + "."}

// PushBucket is the key-value bucket of the push subscriptions (issue 19;
// package push keeps it): the bridge's own, which no client may write or
// read through Publish or the KV API (its records hold the signing
// secrets, and the replicas deliver what they name).
const PushBucket = "JETWAY_PUSH"

// reservedSpaces are the reserved subject spaces as wildcard patterns
// ("_INBOX.>"): no stream may capture a subject in one of them. Overlap
// is of subject spaces, not of text, so ">" and "*.>" are refused too.
var reservedSpaces = func() []string {
	spaces := make([]string, len(reservedPrefixes))
	for i, p := range reservedPrefixes {
		spaces[i] = p + ">"
	}
	return spaces
}()

// validateStreamSubject checks a subject a stream captures: a valid
// filter that overlaps no reserved space. A stream on "_INBOX.>" would
// store the replies of every client's requests (other tenants' deliveries,
// JetStream API answers), and one on "$JS.EVENT.>" their advisories.
func validateStreamSubject(field, subject string) error {
	if err := validateFilterSubject(field, subject); err != nil {
		return err
	}
	for _, r := range reservedSpaces {
		if perm.Intersects(subject, r) {
			return fieldErr(field, ErrInvalidSubject, "%q overlaps the reserved %s subject space", subject, strings.TrimSuffix(r, ".>"))
		}
	}
	return nil
}

// reservedHeaders are header names nats.go reads as the status line of a
// protocol reply: a stored message carrying them (with an empty payload)
// would look like "404 No Messages" or "408 Request Timeout" to every
// nats.go consumer and stop it there.
var reservedHeaders = []string{"Status", "Description"}

// deadLetterHeaderPrefix starts the headers of a dead letter (package
// deadletter writes them): only the bridge sets them, so a client who may
// publish to a DLQ subject cannot forge a dead letter (its origin subject,
// which a redrive publishes to, or who terminated it).
const deadLetterHeaderPrefix = "Jetway-Dead-Letter-"

// validatePublishSubject checks a subject a message is published to: valid
// tokens, no wildcards, not in a reserved subject space.
func validatePublishSubject(field, subject string) error {
	if err := validateSubject(field, subject, false); err != nil {
		return err
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(subject, p) {
			return fieldErr(field, ErrInvalidSubject, "%q is in the reserved %s subject space", subject, strings.TrimSuffix(p, "."))
		}
	}
	return nil
}

// validateFilterSubject checks a subject used as a filter: wildcards allowed
// ('*' as a whole token, '>' as the whole last token).
func validateFilterSubject(field, subject string) error {
	return validateSubject(field, subject, true)
}

func validateSubject(field, subject string, wildcards bool) error {
	switch {
	case subject == "":
		return fieldErr(field, ErrInvalidSubject, "required")
	case len(subject) > maxSubjectLen:
		return fieldErr(field, ErrInvalidSubject, "longer than %d bytes", maxSubjectLen)
	case !utf8.ValidString(subject):
		return fieldErr(field, ErrInvalidSubject, "not valid UTF-8")
	}
	// Token by token without allocating: this runs for every published
	// message. Bytes suffice for the checks: the subject is valid UTF-8, and
	// every byte of a multi-byte rune is 0x80 or more.
	for rest := subject; ; {
		tok, after, more := strings.Cut(rest, ".")
		if tok == "" {
			return fieldErr(field, ErrInvalidSubject, "%q has an empty token", subject)
		}
		wild := false
		for i := 0; i < len(tok); i++ {
			switch c := tok[i]; {
			case c <= ' ' || c == 0x7f:
				return fieldErr(field, ErrInvalidSubject, "%q contains whitespace or a control character", subject)
			case c == '*' || c == '>':
				wild = true
			}
		}
		switch {
		case tok == "*" || tok == ">":
			if !wildcards {
				return fieldErr(field, ErrInvalidSubject, "%q contains a wildcard", subject)
			}
			if tok == ">" && more {
				return fieldErr(field, ErrInvalidSubject, "%q: '>' must be the last token", subject)
			}
		case wild:
			// nats-server treats a partial-token '*' or '>' literally, which
			// is never what a client means.
			return fieldErr(field, ErrInvalidSubject, "%q: '*' and '>' must be whole tokens", subject)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// validateName checks a stream or consumer name.
func validateName(field, name string) error {
	switch {
	case name == "":
		return fieldErr(field, ErrInvalidName, "required")
	case len(name) > maxNameLen:
		return fieldErr(field, ErrInvalidName, "longer than %d bytes", maxNameLen)
	case !utf8.ValidString(name):
		return fieldErr(field, ErrInvalidName, "not valid UTF-8")
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r) {
			return fieldErr(field, ErrInvalidName, "%q: names cannot contain '.', '*', '>', '/', '\\', whitespace or control characters", name)
		}
	}
	return nil
}

// validateHeader checks one header name and its values as the NATS protocol
// can carry them: a printable ASCII name without ':' and values without CR
// or LF. Names starting with "Nats-" are JetStream's own and are set only
// through the request's typed fields.
func validateHeader(field, name string, values []string) error {
	if name == "" {
		return fieldErr(field, ErrInvalidHeader, "empty header name")
	}
	if len(name) > maxHeaderName {
		return fieldErr(field, ErrInvalidHeader, "header name longer than %d bytes", maxHeaderName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return fieldErr(field, ErrInvalidHeader, "header name %q: printable ASCII without ':' or spaces", name)
		}
	}
	if len(name) >= 5 && strings.EqualFold(name[:5], "Nats-") {
		return fieldErr(field, ErrInvalidHeader, "header %q is reserved for JetStream; use the request's fields", name)
	}
	if len(name) >= len(deadLetterHeaderPrefix) && strings.EqualFold(name[:len(deadLetterHeaderPrefix)], deadLetterHeaderPrefix) {
		return fieldErr(field, ErrInvalidHeader, "header %q is reserved for the bridge's dead letters", name)
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return fieldErr(field, ErrInvalidHeader, "header %q is reserved for NATS status replies", name)
		}
	}
	if len(values) == 0 {
		return fieldErr(field, ErrInvalidHeader, "header %q has no values", name)
	}
	for _, v := range values {
		if strings.ContainsAny(v, "\r\n") || !utf8.ValidString(v) {
			return fieldErr(field, ErrInvalidHeader, "header %q: values must be UTF-8 without CR or LF", name)
		}
		// NATS trims spaces and tabs around header values: refuse what
		// would not be stored as sent.
		if v != strings.Trim(v, " \t") {
			return fieldErr(field, ErrInvalidHeader, "header %q: values cannot start or end with spaces or tabs", name)
		}
	}
	return nil
}

// validateMsgID checks a Nats-Msg-Id value.
func validateMsgID(field, id string) error {
	if len(id) > maxMsgIDLen {
		return fieldErr(field, ErrInvalidArgument, "longer than %d bytes", maxMsgIDLen)
	}
	if strings.ContainsAny(id, "\r\n") || !utf8.ValidString(id) {
		return fieldErr(field, ErrInvalidArgument, "must be UTF-8 without CR or LF")
	}
	// It travels as a header value, which NATS trims.
	if id != strings.Trim(id, " \t") {
		return fieldErr(field, ErrInvalidArgument, "cannot start or end with spaces or tabs")
	}
	return nil
}

// pageToken encodes a list offset; tokens are opaque to clients.
func pageToken(offset int) string { return fmt.Sprintf("o%d", offset) }

// parsePageToken decodes a pageToken; empty is the first page.
func parsePageToken(field, tok string) (int, error) {
	if tok == "" {
		return 0, nil
	}
	var off int
	if n, err := fmt.Sscanf(tok, "o%d", &off); err != nil || n != 1 || off < 0 || pageToken(off) != tok {
		return 0, fieldErr(field, ErrInvalidArgument, "not a page token this server issued")
	}
	return off, nil
}

// pageSize applies the default and bounds of page_size.
func pageSize(field string, n int32) (int, error) {
	switch {
	case n == 0:
		return 100, nil
	case n < 0 || n > 1000:
		return 0, fieldErr(field, ErrInvalidArgument, "must be between 1 and 1000")
	}
	return int(n), nil
}
