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
	maxKeyLen    = 4096
	maxPatterns  = 16
)

func validateBucket(field, bucket string) error {
	if bucket == "" {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: required", bridge.ErrInvalidBucket)}
	}
	if len(bucket) > maxBucketLen || !bucketRe.MatchString(bucket) {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: letters, digits, '-' and '_' only, at most %d", bridge.ErrInvalidBucket, clip(bucket), maxBucketLen)}
	}
	return nil
}

// validateKey checks one key: no wildcards.
func validateKey(field, key string) error {
	if key == "" {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: required", bridge.ErrInvalidKey)}
	}
	if len(key) > maxKeyLen || !keyRe.MatchString(key) || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: letters, digits and -/_=. (not starting or ending with '.', no \"..\", no wildcards), at most %d bytes", bridge.ErrInvalidKey, clip(key), maxKeyLen)}
	}
	return nil
}

// validatePattern checks a key pattern (Watch, ListKeys): each
// '.'-separated token is a literal key token, '*', or (last) '>'. That is
// stricter than nats.go's search keys ("a*b" is refused: NATS reads it as
// a literal, and a permission check should never have to guess).
func validatePattern(field, p string) error {
	bad := func() error {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %q: a key pattern of tokens separated by '.', each a key token, '*', or '>' last", bridge.ErrInvalidKey, clip(p))}
	}
	if p == "" || len(p) > maxKeyLen {
		return bad()
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

func validatePatterns(field string, ps []string) error {
	if len(ps) > maxPatterns {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: at most %d patterns", bridge.ErrInvalidKey, maxPatterns)}
	}
	for i, p := range ps {
		if err := validatePattern(fmt.Sprintf("%s[%d]", field, i), p); err != nil {
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
