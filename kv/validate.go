package kv

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/bridge"
)

// nats.go's rules (jetstream/kv.go validBucketRe, validKeyRe): the
// service checks them itself, first, so that what it authorizes is what
// nats.go then uses.
var (
	bucketRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	keyRe    = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
)

// Limits of requests.
const (
	maxBucketLen = 240 // the stream name KV_<bucket> stays within JetStream's 255
	// maxSubjectLen bounds a key's (or pattern's) subject $KV.<bucket>.<key>,
	// as the bridge bounds every subject it is given. nats.go sends the
	// subject in a control line (HPUB, and the direct get's API subject
	// holds it too), and a line over the server's max_control_line (4096
	// by default) makes nats-server close the bridge's connection: one
	// request with a long key would cut every client of the replica off.
	maxSubjectLen = 1024
	maxPatterns   = 16
)

// maxKeyLen is the longest key (or key pattern) of bucket: its subject
// stays within maxSubjectLen.
func maxKeyLen(bucket string) int { return maxSubjectLen - len(subjectOf(bucket, "")) }

func validateBucket(field, bucket string) error {
	if bucket == "" {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: required", bridge.ErrInvalidBucket)}
	}
	if len(bucket) > maxBucketLen || !bucketRe.MatchString(bucket) {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: letters, digits, '-' and '_' only, at most %d", bridge.ErrInvalidBucket, clip(bucket), maxBucketLen)}
	}
	if bucket == bridge.PushBucket {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q is the bridge's own (push subscriptions): use the PushService", bridge.ErrInvalidBucket, bucket)}
	}
	return nil
}

// validateKey checks one key: no wildcards.
func validateKey(field, bucket, key string) error {
	if key == "" {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: required", bridge.ErrInvalidKey)}
	}
	if n := maxKeyLen(bucket); len(key) > n {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: %d bytes, at most %d (the subject $KV.<bucket>.<key> within %d)", bridge.ErrInvalidKey, clip(key), len(key), n, maxSubjectLen)}
	}
	if !keyRe.MatchString(key) || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: letters, digits and -/_=. (not starting or ending with '.', no \"..\", no wildcards)", bridge.ErrInvalidKey, clip(key))}
	}
	return nil
}

// validatePattern checks a key pattern (Watch, ListKeys): each
// '.'-separated token is a literal key token, '*', or (last) '>'. That is
// stricter than nats.go's search keys ("a*b" is refused: NATS reads it as
// a literal, and a permission check should never have to guess).
func validatePattern(field, bucket, p string) error {
	bad := func() error {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: a key pattern of tokens separated by '.', each a key token, '*', or '>' last", bridge.ErrInvalidKey, clip(p))}
	}
	if p == "" {
		return bad()
	}
	if n := maxKeyLen(bucket); len(p) > n {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: %d bytes, at most %d (the subject $KV.<bucket>.<pattern> within %d)", bridge.ErrInvalidKey, clip(p), len(p), n, maxSubjectLen)}
	}
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "*":
		case t == ">":
			if i != len(toks)-1 {
				return bad()
			}
		case t == "" || !keyRe.MatchString(t):
			return bad()
		}
	}
	return nil
}

func validatePatterns(field, bucket string, ps []string) error {
	if len(ps) > maxPatterns {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: at most %d patterns", bridge.ErrInvalidKey, maxPatterns)}
	}
	for i, p := range ps {
		if err := validatePattern(fmt.Sprintf("%s[%d]", field, i), bucket, p); err != nil {
			return err
		}
	}
	return nil
}

// duration converts an optional non-negative duration.
func duration(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		return 0, &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: a non-negative duration", bridge.ErrInvalidArgument)}
	}
	return d.AsDuration(), nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// streamOf is the stream of bucket B: KV_B.
func streamOf(bucket string) string { return "KV_" + bucket }

// subjectOf is the subject of key (or key pattern) k of bucket B: $KV.B.k.
func subjectOf(bucket, k string) string { return "$KV." + bucket + "." + k }
