package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// FleetPrefix is the reserved subject space the replicas of a fleet talk
// in (core NATS, in the bridge's own account): clients may not publish
// there, nor capture it in a stream.
const FleetPrefix = "_JETWAY."

const (
	// sessionsSubject takes a ListSessionsRequest (protobuf) and is
	// answered by each replica with a ListSessionsResponse of its own
	// sessions.
	sessionsSubject = FleetPrefix + "v1.sessions"
	// bridgesSubject takes an empty request and is answered by each
	// replica with its BridgeInfo (protobuf).
	bridgesSubject = FleetPrefix + "v1.bridges"
	// presenceSubject carries a replica's announcements: its name as the
	// data, presenceHeader hello (every presenceInterval, and at once to
	// a replica not known yet) or bye (when it stops cleanly).
	presenceSubject = FleetPrefix + "v1.presence"
	presenceHeader  = "Jetway-Presence"
	// instanceHeader carries the asking process's instance id: a replica
	// does not answer its own requests (it answers those from what it
	// holds), even when another replica has the same name.
	instanceHeader = "Jetway-Instance"
	// replicaHeader carries the answering replica's name on the answers
	// of handlers other packages register (HandleFleet).
	replicaHeader = "Jetway-Replica"
)

// The gathering of answers: it ends once gatherQuiet passes without a new
// answer (counted from the request, then from each answer), and at the
// latest after gatherCap. A replica answers from memory (a map walk), so
// on a LAN its answer comes within a few milliseconds; 100 ms of silence
// is many round trips even across zones, and keeps a ListSessions on a
// single replica quick. The cap bounds the call when answers keep coming
// (a large fleet, a slow replica): the answer is then marked partial.
//
// A replica also waits, up to the cap, for the replicas it knows to be up:
// those that announced themselves within presenceTTL. One that still has
// not answered is reported missing (and the answer partial), so that a
// slow replica is not silently left out.
const (
	gatherQuiet = 100 * time.Millisecond
	gatherCap   = time.Second

	presenceInterval = 10 * time.Second
	presenceTTL      = 3 * presenceInterval
	// maxPeers bounds what a replica remembers of others (a native NATS
	// client of the account could announce any number).
	maxPeers = 1024
	// presenceReplyGap spaces this replica's answers to newcomers' hellos.
	presenceReplyGap = 250 * time.Millisecond
)

// Fleet is how a replica shows itself and reaches the others.
type Fleet struct {
	// Replica names this process in the views (default
	// DefaultReplicaName).
	Replica string
	// Conn is the bridge's own NATS connection (never an identity's), nil
	// when there is none: the gathering and the answers go over it.
	Conn func() *nats.Conn
	// JSDomain is the JetStream domain the bridge works in, if any.
	JSDomain string
	// InProcess: the connection is to an embedded server in this process
	// (its URL is a placeholder, reported as "in-process").
	InProcess bool
}

// DefaultReplicaName is the host name and the process id.
func DefaultReplicaName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "bridge"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// ValidReplicaName checks a replica name: 1 to 255 bytes of printable
// UTF-8.
func ValidReplicaName(name string) error {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: replica name must be 1 to %d bytes of UTF-8", ErrInvalidOption, maxNameLen)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("%w: replica name %q contains a control character", ErrInvalidOption, name)
		}
	}
	return nil
}

// WithFleet names the replica and gives it the connection the fleet
// talks over. Without it, the replica is DefaultReplicaName() and the
// views show its own sessions only.
func WithFleet(f Fleet) Option {
	return func(o *options) error {
		if f.Replica == "" {
			f.Replica = DefaultReplicaName()
		}
		if err := ValidReplicaName(f.Replica); err != nil {
			return err
		}
		if f.Conn == nil {
			return fmt.Errorf("%w: nil fleet connection", ErrInvalidOption)
		}
		o.fleet = f
		return nil
	}
}

// fleet is a replica's part in the views: its registry and identity.
type fleet struct {
	Fleet
	instance string
	started  time.Time
	version  string
	revision string
	sessions *registry
	log      *slog.Logger

	mu sync.Mutex
	// peers are the other replicas heard from, by instance id.
	peers map[string]fleetPeer
	// replied is when a newcomer's hello was last answered: at most one
	// answer per presenceReplyGap, whatever a forger sends.
	replied time.Time
	// handlers answer the requests other packages registered, by subject
	// (HandleFleet).
	handlers map[string]FleetHandler
}

// fleetPeer is another replica as its announcements showed it.
type fleetPeer struct {
	name string
	seen time.Time
}

func newFleet(f Fleet, sessions *registry, log *slog.Logger) (*fleet, error) {
	if f.Replica == "" {
		f.Replica = DefaultReplicaName()
	}
	if f.Conn == nil {
		f.Conn = func() *nats.Conn { return nil }
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("bridge: instance id: %w", err)
	}
	fl := &fleet{Fleet: f, instance: hex.EncodeToString(id[:]), started: time.Now(), sessions: sessions, log: log, version: "unknown", peers: map[string]fleetPeer{}, handlers: map[string]FleetHandler{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		fl.version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				fl.revision = s.Value
			}
		}
	}
	return fl, nil
}

// ownConn reports whether nc is not the bridge's own connection: a
// session on an identity's own (identity propagation).
func (f *fleet) ownConn(nc *nats.Conn) bool {
	own := f.Conn()
	return own != nil && nc != own
}

// info is this replica's BridgeInfo.
func (f *fleet) info() *jetwayv1.BridgeInfo {
	now := time.Now()
	info := &jetwayv1.BridgeInfo{
		Replica: f.Replica, Version: f.version, Revision: f.revision,
		Started: timestamppb.New(f.started), Uptime: durationpb.New(now.Sub(f.started).Round(time.Millisecond)),
		Nats: &jetwayv1.NATSConnection{State: "NONE", JsDomain: f.JSDomain},
	}
	if nc := f.Conn(); nc != nil {
		n := info.Nats
		n.State = nc.Status().String()
		if nc.IsConnected() {
			n.Url = withoutUserInfo(nc.ConnectedUrl())
			n.ServerId, n.ServerName = nc.ConnectedServerId(), nc.ConnectedServerName()
			n.Cluster, n.ServerVersion = nc.ConnectedClusterName(), nc.ConnectedServerVersion()
		}
		if f.InProcess {
			n.Url = "in-process"
		} else {
			for _, s := range nc.Servers() {
				n.Servers = append(n.Servers, withoutUserInfo(s))
			}
		}
		n.Reconnects = nc.Stats().Reconnects
	}
	f.sessions.totals(info)
	return info
}

// withoutUserInfo is a server URL without its user and password.
func withoutUserInfo(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

// fleetSubjects is what a replica listens to: the views' requests, the
// presence and the requests of the handlers registered (HandleFleet).
const fleetSubjects = FleetPrefix + "v1.>"

// Answer makes this replica answer the fleet's requests on nc (the
// bridge's own connection), the session views' and those of the handlers
// registered with HandleFleet (before or after); the subscription lives
// as long as nc, or until it is unsubscribed. nats.go runs the answers on
// the subscription's goroutine, one at a time.
func (b *Bridge) Answer(nc *nats.Conn) (*nats.Subscription, error) {
	f := b.admin.fleet
	sub, err := nc.Subscribe(fleetSubjects, func(m *nats.Msg) { f.answer(nc, m) })
	if err != nil {
		return nil, fmt.Errorf("bridge: subscribe to %s: %w", fleetSubjects, err)
	}
	return sub, nil
}

// answer answers one request of another replica. A request it cannot
// read gets no answer: the asker counts it as a replica that did not
// answer.
func (f *fleet) answer(nc *nats.Conn, m *nats.Msg) {
	if m.Header.Get(instanceHeader) == f.instance {
		return
	}
	if m.Subject == presenceSubject {
		f.heard(nc, m)
		return
	}
	if m.Reply == "" {
		return
	}
	var data []byte
	var err error
	switch m.Subject {
	case sessionsSubject:
		req := &jetwayv1.ListSessionsRequest{}
		if err = proto.Unmarshal(m.Data, req); err != nil {
			f.log.Debug("fleet: unreadable sessions request", slog.Any("error", err))
			return
		}
		data, err = f.sessionsAnswer(req, nc.MaxPayload())
	case bridgesSubject:
		data, err = proto.Marshal(f.info())
	default:
		f.answerHandler(m, nc.MaxPayload())
		return
	}
	if err == nil {
		err = m.RespondMsg(&nats.Msg{Data: data, Header: nats.Header{instanceHeader: []string{f.instance}}})
	}
	if err != nil {
		f.log.Warn("fleet: answer failed", slog.String("subject", m.Subject), slog.Any("error", err))
	}
}

// sessionsAnswer is this replica's answer to req, cut (and marked
// partial) to fit maxPayload (0: no limit known).
func (f *fleet) sessionsAnswer(req *jetwayv1.ListSessionsRequest, maxPayload int64) ([]byte, error) {
	resp := &jetwayv1.ListSessionsResponse{Sessions: f.sessions.list(f.Replica, req), ReplicasAnswered: []string{f.Replica}}
	for {
		data, err := proto.Marshal(resp)
		if err != nil || maxPayload <= 0 || int64(len(data)) <= maxPayload-1024 || len(resp.Sessions) == 0 {
			return data, err
		}
		resp.Sessions, resp.Partial = resp.Sessions[:len(resp.Sessions)/2], true
	}
}

// heard takes another replica's announcement; a hello from a replica not
// known yet is answered with this replica's own, so that a replica that
// starts learns of the others at once.
func (f *fleet) heard(nc *nats.Conn, m *nats.Msg) {
	id, name := m.Header.Get(instanceHeader), string(m.Data)
	if id == "" || ValidReplicaName(name) != nil {
		return
	}
	f.mu.Lock()
	_, known := f.peers[id]
	switch m.Header.Get(presenceHeader) {
	case "hello":
		if known || len(f.peers) < maxPeers {
			f.peers[id] = fleetPeer{name: name, seen: time.Now()}
		}
	case "bye":
		delete(f.peers, id)
		known = true
	}
	reply := !known && time.Since(f.replied) >= presenceReplyGap
	if reply {
		f.replied = time.Now()
	}
	f.mu.Unlock()
	if reply {
		f.announce(nc, "hello")
	}
}

// announce publishes this replica's presence (hello or bye) on nc.
func (f *fleet) announce(nc *nats.Conn, kind string) {
	if nc == nil || !nc.IsConnected() {
		return
	}
	msg := &nats.Msg{Subject: presenceSubject, Data: []byte(f.Replica), Header: nats.Header{instanceHeader: []string{f.instance}, presenceHeader: []string{kind}}}
	if err := nc.PublishMsg(msg); err != nil {
		f.log.Debug("fleet: announce", slog.String("presence", kind), slog.Any("error", err))
	}
}

// expected is the replicas heard from within presenceTTL, by instance id;
// older ones are forgotten.
func (f *fleet) expected() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]string, len(f.peers))
	for id, p := range f.peers {
		if time.Since(p.seen) > presenceTTL {
			delete(f.peers, id)
			continue
		}
		out[id] = p.name
	}
	return out
}

// Announce makes this replica known to the others of its fleet until ctx
// ends: a hello at once and every presenceInterval over the bridge's own
// connection, and a bye at the end (a replica that stops cleanly is not
// waited for). Call it once the connection is up; it returns when ctx
// ends.
func (b *Bridge) Announce(ctx context.Context) {
	f := b.admin.fleet
	t := time.NewTicker(presenceInterval)
	defer t.Stop()
	for {
		f.announce(f.Conn(), "hello")
		select {
		case <-t.C:
		case <-ctx.Done():
			if nc := f.Conn(); nc != nil && nc.IsConnected() {
				f.announce(nc, "bye")
				_ = nc.FlushTimeout(time.Second)
			}
			return
		}
	}
}

// gather publishes a request on subject and hands each answer to take
// until the fleet is quiet (see gatherQuiet) and every replica known to be
// up (expected) has answered, or the cap. partial: the cap or ctx ended
// it, or it could not be sent (no connection); missing: the expected
// replicas that did not answer, by name.
func (f *fleet) gather(ctx context.Context, subject string, req []byte, take func(*nats.Msg)) (partial bool, missing []string) {
	nc := f.Conn()
	if nc == nil || !nc.IsConnected() {
		return true, nil
	}
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		f.log.Warn("fleet: subscribe to the answers' inbox", slog.Any("error", err))
		return true, nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	expected := f.expected()
	msg := &nats.Msg{Subject: subject, Reply: inbox, Data: req, Header: nats.Header{instanceHeader: []string{f.instance}}}
	if err := nc.PublishMsg(msg); err != nil {
		f.log.Warn("fleet: publish request", slog.String("subject", subject), slog.Any("error", err))
		return true, nil
	}
	hard := time.NewTimer(gatherCap)
	defer hard.Stop()
	quiet := time.NewTimer(gatherQuiet)
	defer quiet.Stop()
	// One answer per process: a second from the same instance (a request
	// seen twice, or a forger) is dropped.
	seen := map[string]bool{}
	unanswered := func() []string {
		var names []string
		for id, name := range expected {
			if !seen[id] {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names
	}
	quietPassed := false
	for {
		select {
		case m := <-ch:
			if id := m.Header.Get(instanceHeader); id != "" && !seen[id] {
				seen[id] = true
				take(m)
				if quietPassed && len(unanswered()) == 0 {
					return false, nil
				}
				quiet.Reset(gatherQuiet)
			}
		case <-quiet.C:
			if len(unanswered()) == 0 {
				return false, nil
			}
			quietPassed = true
		case <-hard.C:
			return true, unanswered()
		case <-ctx.Done():
			return true, unanswered()
		}
	}
}

// ListSessions gathers the fleet's sessions and keeps those the caller
// may see.
func (s *adminService) ListSessions(ctx context.Context, req *jetwayv1.ListSessionsRequest) (*jetwayv1.ListSessionsResponse, error) {
	for _, f := range []struct{ field, v string }{{"stream", req.GetStream()}, {"consumer", req.GetConsumer()}} {
		if f.v != "" {
			if err := validateName(f.field, f.v); err != nil {
				return nil, err
			}
		}
	}
	if id := req.GetIdentity(); len(id) > maxNameLen || !utf8.ValidString(id) {
		return nil, fieldErr("identity", ErrInvalidArgument, "at most %d bytes of UTF-8", maxNameLen)
	}
	// A stream named is checked as GetStream checks it; otherwise the
	// caller needs an admin grant (as ListStreams), and sees the streams
	// it covers.
	if err := s.authz.CanAdmin(ctx, req.GetStream(), false); err != nil {
		return nil, err
	}
	f := s.fleet
	resp := &jetwayv1.ListSessionsResponse{Sessions: f.sessions.list(f.Replica, req)}
	var others []string
	cut := false // an answer cut to fit the max payload
	if data, err := proto.Marshal(req); err == nil {
		resp.Partial, resp.ReplicasMissing = f.gather(ctx, sessionsSubject, data, func(m *nats.Msg) {
			var ans jetwayv1.ListSessionsResponse
			if err := proto.Unmarshal(m.Data, &ans); err != nil || len(ans.GetReplicasAnswered()) != 1 {
				f.log.Debug("fleet: unreadable sessions answer", slog.Any("error", err))
				return
			}
			name := ans.GetReplicasAnswered()[0]
			others = append(others, name)
			cut = cut || ans.GetPartial()
			for _, ss := range ans.GetSessions() {
				ss.Replica = name // an answer speaks for its replica only
				resp.Sessions = append(resp.Sessions, ss)
			}
		})
		resp.Partial = resp.Partial || cut
	}
	slices.Sort(others)
	resp.ReplicasAnswered = append([]string{f.Replica}, others...)
	// Authorization is the serving replica's: what other replicas sent
	// is filtered here, by the caller's grants, as its own is.
	caller, all := s.authz.Identity(ctx), s.authz.CanReadAccount(ctx) == nil
	resp.Sessions = slices.DeleteFunc(resp.Sessions, func(ss *jetwayv1.Session) bool {
		if req.GetStream() != "" && ss.GetStream() != req.GetStream() ||
			req.GetConsumer() != "" && ss.GetConsumer() != req.GetConsumer() ||
			req.GetIdentity() != "" && ss.GetIdentity() != req.GetIdentity() {
			return true
		}
		if !s.authz.CanSee(ctx, ss.GetStream()) {
			return true
		}
		// A session on an identity's own NATS connection may be in
		// another account, whose stream names are its own.
		return ss.GetOwnNatsConnection() && !all && ss.GetIdentity() != caller
	})
	sortSessions(resp.Sessions)
	return resp, nil
}

// GetBridgeInfo describes this replica and, when asked, the fleet.
func (s *adminService) GetBridgeInfo(ctx context.Context, req *jetwayv1.GetBridgeInfoRequest) (*jetwayv1.GetBridgeInfoResponse, error) {
	// NATS servers, and totals over every tenant: account-wide.
	if err := s.authz.CanReadAccount(ctx); err != nil {
		return nil, err
	}
	f := s.fleet
	resp := &jetwayv1.GetBridgeInfoResponse{Bridge: f.info()}
	if !req.GetFleet() {
		return resp, nil
	}
	resp.Fleet = []*jetwayv1.BridgeInfo{resp.GetBridge()}
	resp.Partial, resp.ReplicasMissing = f.gather(ctx, bridgesSubject, nil, func(m *nats.Msg) {
		info := &jetwayv1.BridgeInfo{}
		if err := proto.Unmarshal(m.Data, info); err != nil || info.GetReplica() == "" {
			f.log.Debug("fleet: unreadable bridge answer", slog.Any("error", err))
			return
		}
		resp.Fleet = append(resp.Fleet, info)
	})
	slices.SortStableFunc(resp.Fleet, func(a, b *jetwayv1.BridgeInfo) int { return strings.Compare(a.GetReplica(), b.GetReplica()) })
	return resp, nil
}
