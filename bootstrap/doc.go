// Package bootstrap ensures, at the bridge's start (--bootstrap FILE) or
// from `bridge bootstrap [--dry-run] FILE`, that the streams and durable
// consumers a file declares exist with the settings it gives.
//
// # The file
//
// YAML or JSON with two lists:
//
//	streams:            # each a StreamConfig, as POST /v1/streams takes it
//	  - name: ORDERS
//	    subjects: ["orders.>"]
//	    max_age: 604800s
//	consumers:          # each a CreateConsumerRequest: the stream and a ConsumerConfig
//	  - stream: ORDERS
//	    config: {name: billing, ack_wait: 30s}
//
// Every entry is in the REST API's JSON shape (protojson of the
// jetway.v1 messages: proto or lowerCamel field names, durations as
// "30s", 64-bit integers as numbers or strings, enums by name), so
// there is one schema to learn. An unknown field, a value of the wrong
// type, a duplicate entry or a configuration the Admin API would refuse
// is an error naming the entry and the field (Parse), and the bridge
// does not start.
//
// # What Ensure does
//
// Entries are ensured in order, streams first. For each one Ensure reads
// the current configuration from JetStream:
//
//   - missing: it is created with the file's configuration (the API's
//     defaults for what the file leaves out);
//   - present: only the fields the file sets (the keys written in the
//     entry, whatever their value) are compared, in the API's terms, and
//     the differing ones are applied onto the current configuration, so
//     that everything else — settings the file leaves out, settings the
//     API does not model (republish, sources, mirrors, metadata set by
//     others…) — stays as it is. Nothing changes when nothing differs.
//   - Nothing is ever deleted.
//
// A field whose 0 (or empty value) means "the server's default" (a
// stream's duplicate_window and subjects, a consumer's ack_wait,
// max_ack_pending and max_waiting) counts as not set when the file
// gives it 0: JetStream stores its default instead, and comparing the 0
// would update the entry at every start. Give the default's value
// explicitly to return to it. With a backoff, JetStream keeps its first
// step as the ack wait: that is compared, and a file giving both with
// another ack_wait is refused.
//
// Changes JetStream refuses on update are reported as a conflict
// (ErrConflict) before anything is sent: a stream's storage, a
// retention change to or from work queue, turning sealed, deny_delete,
// deny_purge or allow_msg_ttl off again; a consumer's deliver_policy,
// opt_start_sequence, opt_start_time, ack_policy, max_waiting or
// memory_storage. Delete and recreate the entry, or change the file.
//
// Each entry is reported: created, updated (with the changed fields,
// from → to), unchanged, or failed (with why). Retryable failures
// (JetStream unavailable or not answering) are told apart from
// permanent ones (conflicts, refused configurations, permission denied,
// a consumer's stream missing) by Retryable. A permanent failure is for
// an operator: the bridge stops on one (package server), and `bridge
// bootstrap` exits non-zero; EnsureRetrying retries the others.
//
// # Replicas starting together
//
// Ensure is safe to run from several processes at once on the same
// file. A create made by two replicas with the same configuration
// would succeed for both (JetStream's create is idempotent), so a
// create carries a one-off claim in its metadata (ClaimKey): of
// concurrent creates exactly one succeeds and reports created; the
// others find the name taken, read the entry again and compare, as for
// an entry that was there. The winner removes its claim with an update
// right away, and any later Ensure removes a claim left behind (by a
// process that died in between); claims are never compared. Updates
// are computed from the same file onto the same configuration, so
// concurrent ones write the same thing.
package bootstrap
