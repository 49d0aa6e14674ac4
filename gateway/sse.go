package gateway

import (
	"bytes"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// MIMEEventStream is the Accept value that turns a streaming REST response
// into Server-Sent Events.
const MIMEEventStream = "text/event-stream"

// SSEErrorEvent names the in-band failure event of a Server-Sent Events
// stream (its data is a google.rpc.Status as JSON). It is not "error":
// that is EventSource's own connection-error event, and a page whose
// onerror closes the source would stop instead of reconnecting.
const SSEErrorEvent = "jetway-error"

// SSERetry is the reconnection delay, in milliseconds, the first event of
// a stream tells EventSource to use (its default varies by browser, 3 to
// 5 s).
const SSERetry = 2000

// eventStream marshals streamed responses as Server-Sent Events: one event
// per response, named after its kind (Subscribe's subscribed, message,
// batch and heartbeat; a KV watch's entry, initialized and heartbeat; a
// redrive's progress and summary; SSEErrorEvent for a failure), with the
// JSON as data and, for messages, the stream sequence (of a batch, its last
// message's; of a KV entry, its revision) as the event id, so that a
// browser's EventSource sends it back as Last-Event-ID when it reconnects. grpc-gateway's stream forwarder wraps
// each response as {"result": …} and an error as {"error": …}; the data
// line carries the same JSON as the NDJSON form without that wrapper.
type eventStream struct {
	*runtime.JSONPb
}

func (e *eventStream) ContentType(any) string { return MIMEEventStream }

// Delimiter ends an event.
func (e *eventStream) Delimiter() []byte { return []byte("\n\n") }

// Marshal writes one event. Anything that is not a stream chunk (a unary
// response asked for with this Accept) is plain JSON.
func (e *eventStream) Marshal(v any) ([]byte, error) {
	var event, id string
	var payload any
	switch chunk := v.(type) {
	case map[string]any:
		payload = chunk["result"]
		event, id = eventOf(payload)
	case map[string]proto.Message:
		payload, event = chunk["error"], SSEErrorEvent
	default:
		return e.JSONPb.Marshal(v)
	}
	data, err := e.JSONPb.Marshal(payload)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if event == "subscribed" || event == "initialized" {
		buf.WriteString("retry: " + strconv.Itoa(SSERetry) + "\n")
	}
	if id != "" {
		buf.WriteString("id: " + id + "\n")
	}
	buf.WriteString("event: " + event + "\n")
	// JSON from protojson has no raw newlines, so one data line holds it.
	buf.WriteString("data: ")
	buf.Write(bytes.ReplaceAll(data, []byte("\n"), []byte("\ndata: ")))
	return buf.Bytes(), nil
}

func eventOf(v any) (event, id string) {
	switch w := v.(type) {
	case *jetwayv1.WatchBucketResponse:
		return watchEventOf(w)
	case *jetwayv1.RedriveDeadLettersResponse:
		return redriveEventOf(w)
	}
	r, ok := v.(*jetwayv1.SubscribeResponse)
	if !ok {
		return "message", ""
	}
	switch ev := r.GetEvent().(type) {
	case *jetwayv1.SubscribeResponse_Message:
		return "message", strconv.FormatUint(ev.Message.GetStreamSequence(), 10)
	case *jetwayv1.SubscribeResponse_Batch:
		// Resuming after the last message of the batch resumes after all.
		if msgs := ev.Batch.GetMessages(); len(msgs) > 0 {
			return "batch", strconv.FormatUint(msgs[len(msgs)-1].GetStreamSequence(), 10)
		}
		return "batch", ""
	case *jetwayv1.SubscribeResponse_Heartbeat:
		return "heartbeat", ""
	case *jetwayv1.SubscribeResponse_Subscribed:
		return "subscribed", ""
	}
	return "message", ""
}

// watchEventOf names a KV watch's events: entry (its id the revision, so
// that Last-Event-ID resumes after it), initialized, heartbeat. The first
// event of a watch is an entry or initialized: either may carry retry.
func watchEventOf(w *jetwayv1.WatchBucketResponse) (event, id string) {
	switch ev := w.GetEvent().(type) {
	case *jetwayv1.WatchBucketResponse_Entry:
		return "entry", strconv.FormatUint(ev.Entry.GetRevision(), 10)
	case *jetwayv1.WatchBucketResponse_Initialized:
		return "initialized", ""
	case *jetwayv1.WatchBucketResponse_Heartbeat:
		return "heartbeat", ""
	}
	return "entry", ""
}

// redriveEventOf names a redrive's events: progress (its id the dead
// letter's DLQ sequence) and summary, the last.
func redriveEventOf(r *jetwayv1.RedriveDeadLettersResponse) (event, id string) {
	switch ev := r.GetEvent().(type) {
	case *jetwayv1.RedriveDeadLettersResponse_Progress:
		return "progress", strconv.FormatUint(ev.Progress.GetSequence(), 10)
	case *jetwayv1.RedriveDeadLettersResponse_Summary:
		return "summary", ""
	}
	return "message", ""
}
