package bridge

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
)

// The fleet's requests of other packages (push's state, issue 19): a
// package registers a handler for a name of its own under FleetPrefix+
// "v1." and gathers its answers from the other replicas as the session
// views do, with the same quiet time, cap and presence rules.

// maxFleetName bounds the name of a registered request.
const maxFleetName = 64

// answerRoom is what a fleet answer leaves of the NATS max payload for
// its headers.
const answerRoom = 1024

// FleetHandler answers another replica's request: req is the request's
// data, maxAnswer the most bytes the answer may hold (0: no limit known);
// the answer must fit (cut it, and say so in it), or it is not sent. An
// error sends no answer: the asker counts the replica as not answered.
// Handlers run on the fleet subscription's goroutine, one at a time, and
// must answer from memory (no I/O, no waiting).
type FleetHandler func(req []byte, maxAnswer int64) ([]byte, error)

// FleetAnswer is one other replica's answer to a fleet request.
type FleetAnswer struct {
	// Replica is the name of the replica that answered (two processes
	// given the same name each answer).
	Replica string
	// Data is the answer its handler gave.
	Data []byte
}

// FleetGathering is what GatherFleet heard from the other replicas.
type FleetGathering struct {
	// Answers are the other replicas' answers, one per process, in the
	// order they came; this replica's own is not among them.
	Answers []FleetAnswer
	// Partial: the gathering stopped at its cap (1 s) while answers could
	// still come or a replica known to be up had not answered, it could
	// not be sent (this replica has no NATS connection), or more replicas
	// answered than are kept (1024). As ListSessionsResponse.partial.
	Partial bool
	// Missing are the replicas that announced themselves in the last 30 s
	// and did not answer within the cap, by name (Partial is then set).
	Missing []string
}

// validFleetName checks the name of a registered request: 1 to 64 bytes,
// dot-separated tokens of lower-case letters, digits, '-' and '_', not
// one of the views' own.
func validFleetName(name string) error {
	if name == "" || len(name) > maxFleetName {
		return fmt.Errorf("%w: fleet request name must be 1 to %d bytes", ErrInvalidOption, maxFleetName)
	}
	token := 0
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_':
			token++
		case r == '.' && token > 0:
			token = 0
		default:
			return fmt.Errorf("%w: fleet request name %q: dot-separated tokens of a-z, 0-9, '-' and '_'", ErrInvalidOption, name)
		}
	}
	if token == 0 {
		return fmt.Errorf("%w: fleet request name %q ends with a dot", ErrInvalidOption, name)
	}
	switch FleetPrefix + "v1." + name {
	case sessionsSubject, bridgesSubject, presenceSubject:
		return fmt.Errorf("%w: fleet request name %q is the bridge's own", ErrInvalidOption, name)
	}
	return nil
}

// ReplicaName is this replica's name in the fleet (--replica-name).
func (b *Bridge) ReplicaName() string { return b.admin.fleet.Replica }

// HandleFleet makes this replica answer the other replicas' requests on
// FleetPrefix+"v1."+name with h, from the moment it returns (on the
// connections Answer was or will be called with). A name is registered
// once: again, or one not valid (validFleetName), is an error wrapping
// ErrInvalidOption. Safe for concurrent use.
func (b *Bridge) HandleFleet(name string, h FleetHandler) error {
	if err := validFleetName(name); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("%w: nil fleet handler for %q", ErrInvalidOption, name)
	}
	f := b.admin.fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	subject := FleetPrefix + "v1." + name
	if _, taken := f.handlers[subject]; taken {
		return fmt.Errorf("%w: fleet request %q already has a handler", ErrInvalidOption, name)
	}
	f.handlers[subject] = h
	return nil
}

// GatherFleet asks the other replicas (request name, data req) and
// gathers their answers as the session views do: until 100 ms pass
// without a new one and every replica known to be up has answered, for
// at most 1 s, or until ctx ends. The answers are at most the NATS max
// payload each, and at most 1024 are kept. The only error is a name not
// valid (ErrInvalidOption); one the other replicas do not handle gets no
// answers (those known to be up are then missing).
func (b *Bridge) GatherFleet(ctx context.Context, name string, req []byte) (FleetGathering, error) {
	if err := validFleetName(name); err != nil {
		return FleetGathering{}, err
	}
	f := b.admin.fleet
	var g FleetGathering
	cut := false
	g.Partial, g.Missing = f.gather(ctx, FleetPrefix+"v1."+name, req, func(m *nats.Msg) {
		replica := m.Header.Get(replicaHeader)
		if ValidReplicaName(replica) != nil {
			f.log.Debug("fleet: an answer without a valid replica name", slog.String("request", name))
			return
		}
		if len(g.Answers) >= maxPeers {
			cut = true
			return
		}
		g.Answers = append(g.Answers, FleetAnswer{Replica: replica, Data: m.Data})
	})
	g.Partial = g.Partial || cut
	return g, nil
}

// answerHandler answers a request of a registered handler (none: no
// answer).
func (f *fleet) answerHandler(m *nats.Msg, maxPayload int64) {
	f.mu.Lock()
	h := f.handlers[m.Subject]
	f.mu.Unlock()
	if h == nil {
		return
	}
	var limit int64
	if maxPayload > 0 {
		limit = max(maxPayload-answerRoom, 1)
	}
	data, err := h(m.Data, limit)
	if err == nil && limit > 0 && int64(len(data)) > limit {
		err = fmt.Errorf("answer of %d bytes is over the %d the max payload leaves", len(data), limit)
	}
	if err == nil {
		err = m.RespondMsg(&nats.Msg{Data: data, Header: nats.Header{instanceHeader: []string{f.instance}, replicaHeader: []string{f.Replica}}})
	}
	if err != nil {
		f.log.Warn("fleet: answer failed", slog.String("subject", m.Subject), slog.Any("error", err))
	}
}
