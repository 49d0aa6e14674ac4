// Package deadletter writes, lists and redrives dead letters (issue 19):
// copies of the messages a consumer gave up on, published to the
// consumer's dead_letter_subject (its metadata key
// jetway.dead_letter.subject) for a stream of the operator's to keep.
//
// Two paths write them, with one message id per (stream, consumer,
// stream sequence), jetway-dl:<stream>:<consumer>:<seq>, so that
// JetStream's deduplication in the DLQ stream keeps one copy however many
// replicas and retries write it:
//
//   - a TERM through the bridge (Writer.BeforeTerm, Writer.Terminate)
//     copies the message first, then TERMs it: on work-queue and interest
//     streams a TERM removes the message, so only a copy made before it
//     keeps the payload;
//   - the advisory worker (Worker) reads JetStream's MAX_DELIVERIES and
//     MSG_TERMINATED advisories from the stream JETWAY_DEAD_LETTER_ADVISORIES
//     through one durable consumer that every replica shares, and copies
//     each message whose consumer has a dead-letter subject. It acks an
//     advisory only once its copy is stored, so a replica that stops
//     mid-way leaves the advisory to another.
//
// Service is the jetway.v1 DeadLetterService over the DLQ streams.
package deadletter

import (
	"errors"
	"time"
)

// The headers of a dead letter.
const (
	HeaderStream       = "Jetway-Dead-Letter-Stream"
	HeaderConsumer     = "Jetway-Dead-Letter-Consumer"
	HeaderSequence     = "Jetway-Dead-Letter-Sequence"
	HeaderSubject      = "Jetway-Dead-Letter-Subject"
	HeaderDeliveries   = "Jetway-Dead-Letter-Deliveries"
	HeaderReason       = "Jetway-Dead-Letter-Reason"
	HeaderTermReason   = "Jetway-Dead-Letter-Term-Reason"
	HeaderTerminatedBy = "Jetway-Dead-Letter-Terminated-By"
	HeaderTime         = "Jetway-Dead-Letter-Time"
	HeaderMsgID        = "Jetway-Dead-Letter-Msg-Id"
	HeaderLost         = "Jetway-Dead-Letter-Lost"

	// headerPrefix starts every header above.
	headerPrefix = "Jetway-Dead-Letter-"
)

// The values of HeaderReason.
const (
	ReasonMaxDeliveries = "max_deliveries"
	ReasonTerminated    = "terminated"
)

// LostValue is HeaderLost's value.
const LostValue = "message no longer in the stream"

// The advisory pipeline's JetStream objects.
const (
	AdvisoryStream   = "JETWAY_DEAD_LETTER_ADVISORIES"
	AdvisoryConsumer = "jetway-dead-letters"
)

// advisorySubjects are the advisories the pipeline captures.
var advisorySubjects = []string{
	"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
	"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
}

// ErrInvalidOption is returned for an option with a bad value.
var ErrInvalidOption = errors.New("deadletter: invalid option")

// lookupTTL is how long a consumer's dead-letter subject is cached.
const lookupTTL = 5 * time.Second

// MsgID is the Nats-Msg-Id of the dead letter of a message.
func MsgID(stream, consumer string, seq uint64) string {
	return "jetway-dl:" + stream + ":" + consumer + ":" + uitoa(seq)
}

// redriveMsgID is the Nats-Msg-Id of a redriven message that had none.
func redriveMsgID(stream string, seq uint64) string {
	return "jetway-redrive:" + stream + ":" + uitoa(seq)
}
