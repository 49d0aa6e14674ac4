package bridge

// Observer hears what the services do, for metrics (package metrics
// implements it with Prometheus). Its methods are called on request paths:
// they must be fast, never block, and be safe for concurrent use. Labels
// are bounded: stream names (which operators create), ErrorInfo reasons
// and fixed words, never subjects, consumers of ephemerals or identities.
type Observer interface {
	// Published is a publish JetStream stored (or found a duplicate of).
	Published(stream string)
	// PublishFailed is a publish that failed, by ErrorInfo reason.
	PublishFailed(reason string)
	// Delivered is a message handed to a client (Subscribe, Consume,
	// Fetch); redelivered when JetStream delivered it before.
	Delivered(stream string, redelivered bool)
	// Acked is an ack operation sent to JetStream: kind is ack, nak,
	// term or in_progress.
	Acked(kind string)
	// AckRefused is an ack operation refused before reaching JetStream,
	// by ErrorInfo reason (an expired, invalid or foreign token).
	AckRefused(reason string)
	// StreamOpened and StreamClosed frame a Subscribe or Consume stream
	// (rpc is "subscribe" or "consume").
	StreamOpened(rpc string)
	StreamClosed(rpc string)
	// InFlight changes the messages (and their bytes) Consume streams
	// have delivered and their clients not yet acked, by delta.
	InFlight(msgs, bytes int)
	// FetchWaiting changes the number of Fetch calls waiting on JetStream
	// by delta.
	FetchWaiting(delta int)
}

type noObserver struct{}

func (noObserver) Published(string)       {}
func (noObserver) PublishFailed(string)   {}
func (noObserver) Delivered(string, bool) {}
func (noObserver) Acked(string)           {}
func (noObserver) AckRefused(string)      {}
func (noObserver) StreamOpened(string)    {}
func (noObserver) StreamClosed(string)    {}
func (noObserver) FetchWaiting(int)       {}
func (noObserver) InFlight(int, int)      {}

// reasonOf is the ErrorInfo reason err would carry.
func reasonOf(err error) string {
	e, _ := ErrorProto(err)
	return e.GetReason()
}
