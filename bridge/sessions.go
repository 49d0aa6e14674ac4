package bridge

import (
	"cmp"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// session is one open Subscribe or Consume stream, or one waiting Fetch,
// as the session views show it. What is fixed at open is plain; what
// moves while it runs is atomic, written by the session's own goroutine
// (one add per event or ack, one store per loop turn) and read by
// snapshots, so that the hot path takes no lock.
type session struct {
	id        uint64
	kind      jetwayv1.SessionKind
	identity  string
	stream    string
	consumer  string
	peer      string
	ephemeral bool
	ownConn   bool
	window    int64
	winBytes  int64
	since     time.Time

	inFlight, inFlightBytes              atomic.Int64
	delivered                            atomic.Uint64
	acked, nacked, termed, inProgressCnt atomic.Uint64
}

// countAck counts one acknowledgement a Consume client sent.
func (s *session) countAck(k jetwayv1.AckKind) {
	switch k {
	case jetwayv1.AckKind_ACK_KIND_NAK:
		s.nacked.Add(1)
	case jetwayv1.AckKind_ACK_KIND_TERM:
		s.termed.Add(1)
	case jetwayv1.AckKind_ACK_KIND_IN_PROGRESS:
		s.inProgressCnt.Add(1)
	default:
		s.acked.Add(1)
	}
}

// proto is the session as the API shows it, on replica.
func (s *session) proto(replica string) *jetwayv1.Session {
	return &jetwayv1.Session{
		Id: strconv.FormatUint(s.id, 10), Replica: replica, Kind: s.kind, Identity: s.identity,
		Stream: s.stream, Consumer: s.consumer, Ephemeral: s.ephemeral,
		MaxInFlight: s.window, MaxBytesInFlight: s.winBytes,
		InFlight: s.inFlight.Load(), InFlightBytes: s.inFlightBytes.Load(),
		Delivered: s.delivered.Load(), Acked: s.acked.Load(), Nacked: s.nacked.Load(),
		Termed: s.termed.Load(), InProgress: s.inProgressCnt.Load(),
		Since: timestamppb.New(s.since), Peer: s.peer, OwnNatsConnection: s.ownConn,
	}
}

// registry holds the sessions open on this replica. A session costs one
// lock at open and one at close; nothing per message.
type registry struct {
	mu   sync.Mutex
	open map[uint64]*session
	next uint64
}

func newRegistry() *registry { return &registry{open: make(map[uint64]*session)} }

// add registers s and returns the function that removes it.
func (r *registry) add(s *session) func() {
	r.mu.Lock()
	r.next++
	s.id = r.next
	r.open[s.id] = s
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.open, s.id)
		r.mu.Unlock()
	}
}

// snapshot is the open sessions (their moving counters are read later,
// each atomically).
func (r *registry) snapshot() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.open))
	for _, s := range r.open {
		out = append(out, s)
	}
	return out
}

// list is the sessions matching the request's filters, as protos of
// replica, in the views' order.
func (r *registry) list(replica string, req *jetwayv1.ListSessionsRequest) []*jetwayv1.Session {
	var out []*jetwayv1.Session
	for _, s := range r.snapshot() {
		if (req.GetStream() == "" || s.stream == req.GetStream()) &&
			(req.GetConsumer() == "" || s.consumer == req.GetConsumer()) &&
			(req.GetIdentity() == "" || s.identity == req.GetIdentity()) {
			out = append(out, s.proto(replica))
		}
	}
	sortSessions(out)
	return out
}

// sortSessions orders sessions by replica, kind, stream, consumer, id.
func sortSessions(ss []*jetwayv1.Session) {
	slices.SortFunc(ss, func(a, b *jetwayv1.Session) int {
		if c := cmp.Compare(a.GetReplica(), b.GetReplica()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.GetKind(), b.GetKind()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.GetStream(), b.GetStream()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.GetConsumer(), b.GetConsumer()); c != 0 {
			return c
		}
		ai, _ := strconv.ParseUint(a.GetId(), 10, 64)
		bi, _ := strconv.ParseUint(b.GetId(), 10, 64)
		return cmp.Compare(ai, bi)
	})
}

// totals counts the open sessions by kind, and the messages Consume
// streams hold.
func (r *registry) totals(info *jetwayv1.BridgeInfo) {
	for _, s := range r.snapshot() {
		switch s.kind {
		case jetwayv1.SessionKind_SESSION_KIND_SUBSCRIBE:
			info.SubscribeStreams++
		case jetwayv1.SessionKind_SESSION_KIND_CONSUME:
			info.ConsumeStreams++
		case jetwayv1.SessionKind_SESSION_KIND_FETCH:
			info.FetchWaiting++
		}
		info.InFlight += s.inFlight.Load()
	}
}

// openSession registers a Subscribe or Consume stream once its consumer
// is resolved; the returned function removes it.
func (s *messageService) openSession(ctx context.Context, kind jetwayv1.SessionKind, sub *subscription) (*session, func()) {
	sess := &session{
		kind: kind, identity: sub.identity, stream: sub.info.GetStream(), consumer: sub.info.GetConsumer(),
		ephemeral: sub.info.GetEphemeral(), window: int64(sub.window), winBytes: int64(sub.windowBytes),
		since: time.Now(), peer: peerOf(ctx), ownConn: s.fleet.ownConn(sub.js.Conn()),
	}
	return sess, s.sessions.add(sess)
}

// peerOf is the client's address: the gRPC peer's, or, for a call the
// gateway made in process (REST), the HTTP client's as the gateway put it
// last in x-forwarded-for. That header is read only from the gateway: a
// gRPC client over TCP could send any.
func peerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if ok && p.Addr != nil && p.Addr.Network() != "bufconn" {
		return p.Addr.String()
	}
	if v := metadata.ValueFromIncomingContext(ctx, "x-forwarded-for"); len(v) > 0 {
		all := strings.Split(v[len(v)-1], ",")
		last := strings.TrimSpace(all[len(all)-1])
		if net.ParseIP(last) != nil {
			return last
		}
	}
	return ""
}
