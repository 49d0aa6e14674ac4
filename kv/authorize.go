package kv

import (
	"context"
)

// The mapping of KV operations onto the bridge's permission questions
// (README, "Key-value"). Names and keys are validated first: a bucket
// holds no '.', '*' or '>', and a key no wildcard, so each subject below
// names exactly what the call touches.

// canAdminBucket: creating, updating or deleting bucket B administers the
// stream KV_B and gives it the subjects $KV.B.>.
func (s *Service) canAdminBucket(ctx context.Context, field, bucket string) error {
	if err := s.authz.CanAdmin(ctx, streamOf(bucket), true); err != nil {
		return err
	}
	return s.authz.CanAdminSubjects(ctx, field, []string{subjectOf(bucket, ">")})
}

// canWriteKey: a put, create, update, delete or purge of key K publishes
// to $KV.B.K.
func (s *Service) canWriteKey(ctx context.Context, bucket, key string) error {
	return s.authz.CanPublish(ctx, subjectOf(bucket, key))
}

// canRead: reading keys (or key patterns; none: every key) consumes the
// stream KV_B with an ephemeral consumer filtered on their subjects.
func (s *Service) canRead(ctx context.Context, bucket string, patterns []string) error {
	if err := s.authz.CanConsume(ctx, streamOf(bucket), ""); err != nil {
		return err
	}
	subjects := make([]string, 0, max(len(patterns), 1))
	for _, p := range patterns {
		subjects = append(subjects, subjectOf(bucket, p))
	}
	if len(subjects) == 0 {
		subjects = append(subjects, subjectOf(bucket, ">"))
	}
	return s.authz.CanReadSubjects(ctx, subjects)
}
