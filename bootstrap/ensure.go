package bootstrap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/refusal"
)

// ErrConflict is a change JetStream does not make on update (a stream's
// storage, a consumer's deliver policy…): the entry must be recreated,
// or the file changed.
var ErrConflict = errors.New("cannot change on update")

// JetStream is what Ensure needs of nats.go's JetStream: its stream and
// consumer managers, and the connection (to hear of refused requests).
type JetStream interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
	UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
	Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error)
	CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	UpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	Conn() *nats.Conn
}

var _ JetStream = jetstream.JetStream(nil)

// Options tune Ensure.
type Options struct {
	// DryRun reads and compares, and writes nothing: the report says
	// what would be done.
	DryRun bool
	// CallTimeout bounds each JetStream request (default 5s).
	CallTimeout time.Duration
}

// Ensure makes JetStream hold the file's entries (see the package doc)
// and reports what it did for each, in the file's order. It stops early
// only when ctx ends; the entries not reached then are not reported.
// Safe to run from several processes at once.
func (f *File) Ensure(ctx context.Context, js JetStream, opts Options) *Report {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Second
	}
	e := &ensurer{js: js, opts: opts, planned: map[string]bool{}}
	r := &Report{DryRun: opts.DryRun}
	for _, s := range f.Streams {
		if ctx.Err() != nil {
			return r
		}
		res := e.stream(ctx, s)
		if res.Action == Created {
			e.planned[s.js.Name] = true
		}
		r.Results = append(r.Results, res)
	}
	for _, c := range f.Consumers {
		if ctx.Err() != nil {
			return r
		}
		r.Results = append(r.Results, e.consumer(ctx, c))
	}
	return r
}

type ensurer struct {
	js   JetStream
	opts Options
	// planned are the streams a dry run would create: their consumers
	// would be created too.
	planned map[string]bool
}

// call runs one JetStream request, bounded by CallTimeout, and
// translates its error. A request nats-server refuses the connection's
// NATS user fails at once with ErrPermissionDenied (nats.go would wait
// for the answer that never comes until the timeout).
func (e *ensurer) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.CallTimeout)
	defer cancel()
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	if nc := e.js.Conn(); nc != nil {
		w := refusal.All(nc, func(subject string, err error) {
			if strings.HasPrefix(subject, "$JS.") {
				refuse(fmt.Errorf("%w: nats-server refused the NATS user %s: %v", bridge.ErrPermissionDenied, subject, err))
			}
		})
		defer w.Stop()
	}
	err := f(ctx)
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, bridge.ErrPermissionDenied) {
		return fmt.Errorf("%s: %w", what, cause)
	}
	return bridge.JetStreamError(err, what)
}

// newClaim is a metadata map with a claim of this create added.
func newClaim(md map[string]string) map[string]string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	out := maps.Clone(md)
	if out == nil {
		out = map[string]string{}
	}
	out[ClaimKey] = hex.EncodeToString(b)
	return out
}

func hasClaim(md map[string]string) bool {
	_, ok := md[ClaimKey]
	return ok
}

// conflicts is the error of the changes JetStream refuses on update, nil
// when there are none.
func conflicts(changes []Change) error {
	var why []string
	for _, c := range changes {
		if c.Conflict != "" {
			why = append(why, fmt.Sprintf("%s (%s): %s", c, c.Conflict, "recreate it, or change the file"))
		}
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrConflict, strings.Join(why, "; "))
}

// lostRaces bounds how often an entry is read again after a create that
// another process won: twice is one race lost; more means the entry is
// being deleted and created under us.
const lostRaces = 3

func (e *ensurer) stream(ctx context.Context, s Stream) Result {
	name := s.js.Name
	res := Result{Kind: "stream", Stream: name, Name: name}
	fail := func(err error) Result {
		res.Action, res.Err = Failed, err
		return res
	}
	for range lostRaces {
		var cur *jetstream.StreamInfo
		err := e.call(ctx, fmt.Sprintf("get stream %q", name), func(ctx context.Context) error {
			st, err := e.js.Stream(ctx, name)
			if err == nil {
				cur = st.CachedInfo()
			}
			return err
		})
		switch {
		case errors.Is(err, bridge.ErrStreamNotFound):
			if s.js.Sealed {
				return fail(fmt.Errorf("sealed: %w: a stream can only be sealed by an update", bridge.ErrInvalidConfig))
			}
			if e.opts.DryRun {
				res.Action = Created
				return res
			}
			cfg := s.js
			cfg.Metadata = newClaim(cfg.Metadata)
			var made *jetstream.StreamInfo
			err := e.call(ctx, fmt.Sprintf("create stream %q", name), func(ctx context.Context) error {
				st, err := e.js.CreateStream(ctx, cfg)
				if err == nil {
					made = st.CachedInfo()
				}
				return err
			})
			switch {
			case errors.Is(err, bridge.ErrStreamExists):
				continue // another process created it: compare
			case err != nil:
				return fail(err)
			}
			res.Action = Created
			next := made.Config
			next.Metadata = ownMetadata(next.Metadata)
			if err := e.call(ctx, fmt.Sprintf("update stream %q", name), func(ctx context.Context) error {
				_, err := e.js.UpdateStream(ctx, next)
				return err
			}); err != nil {
				res.Note = fmt.Sprintf("created, but its claim (metadata %s) stays until the next bootstrap: %v", ClaimKey, err)
			}
			return res
		case err != nil:
			return fail(err)
		}
		changes := diff(streamFields, s.set, bridge.StreamConfigTo(cur.Config), bridge.StreamConfigTo(s.js))
		res.Changes = changes
		if err := conflicts(changes); err != nil {
			return fail(err)
		}
		res.Action = Updated
		if len(changes) == 0 {
			res.Action = Unchanged
			// A claim left behind (its creator stopped before removing
			// it) is removed; that is no change of the file's.
			if !hasClaim(cur.Config.Metadata) {
				return res
			}
		}
		if e.opts.DryRun {
			return res
		}
		next := cur.Config
		apply(streamFields, changes, &next, s.js)
		next.Metadata = ownMetadata(next.Metadata)
		if err := e.call(ctx, fmt.Sprintf("update stream %q", name), func(ctx context.Context) error {
			_, err := e.js.UpdateStream(ctx, next)
			return err
		}); err != nil {
			return fail(err)
		}
		return res
	}
	return fail(fmt.Errorf("created and gone %d times while being ensured: %w", lostRaces, bridge.ErrUnavailable))
}

func (e *ensurer) consumer(ctx context.Context, c Consumer) Result {
	name := c.js.Durable
	res := Result{Kind: "consumer", Stream: c.Stream, Name: name}
	fail := func(err error) Result {
		res.Action, res.Err = Failed, err
		return res
	}
	what := fmt.Sprintf("consumer %q on stream %q", name, c.Stream)
	for range lostRaces {
		var cur *jetstream.ConsumerInfo
		err := e.call(ctx, "get "+what, func(ctx context.Context) error {
			cons, err := e.js.Consumer(ctx, c.Stream, name)
			if err == nil {
				cur = cons.CachedInfo()
			}
			return err
		})
		switch {
		case errors.Is(err, bridge.ErrStreamNotFound) && e.opts.DryRun && e.planned[c.Stream]:
			res.Action = Created // with the stream
			return res
		case errors.Is(err, bridge.ErrConsumerNotFound):
			if e.opts.DryRun {
				res.Action = Created
				return res
			}
			cfg := c.js
			cfg.Metadata = newClaim(cfg.Metadata)
			var made *jetstream.ConsumerInfo
			err := e.call(ctx, "create "+what, func(ctx context.Context) error {
				cons, err := e.js.CreateConsumer(ctx, c.Stream, cfg)
				if err == nil {
					made = cons.CachedInfo()
				}
				return err
			})
			switch {
			case errors.Is(err, bridge.ErrConsumerExists):
				continue
			case err != nil:
				return fail(err)
			}
			res.Action = Created
			next := made.Config
			next.Metadata = ownMetadata(next.Metadata)
			if err := e.call(ctx, "update "+what, func(ctx context.Context) error {
				_, err := e.js.UpdateConsumer(ctx, c.Stream, next)
				return err
			}); err != nil {
				res.Note = fmt.Sprintf("created, but its claim (metadata %s) stays until the next bootstrap: %v", ClaimKey, err)
			}
			return res
		case err != nil:
			return fail(err)
		}
		have, want := bridge.ConsumerConfigTo(cur.Config), bridge.ConsumerConfigTo(c.js)
		// With a backoff, JetStream stores its first step as the ack
		// wait, whatever was sent.
		backoff := have.GetBackoff()
		if c.set["backoff"] {
			backoff = want.GetBackoff()
		}
		if len(backoff) > 0 {
			want.AckWait = backoff[0]
		}
		changes := diff(consumerFields, c.set, have, want)
		res.Changes = changes
		if err := conflicts(changes); err != nil {
			return fail(err)
		}
		res.Action = Updated
		if len(changes) == 0 {
			res.Action = Unchanged
			if !hasClaim(cur.Config.Metadata) {
				return res
			}
		}
		if e.opts.DryRun {
			return res
		}
		next := cur.Config
		apply(consumerFields, changes, &next, c.js)
		next.Metadata = ownMetadata(next.Metadata)
		if err := e.call(ctx, "update "+what, func(ctx context.Context) error {
			_, err := e.js.UpdateConsumer(ctx, c.Stream, next)
			return err
		}); err != nil {
			return fail(err)
		}
		return res
	}
	return fail(fmt.Errorf("created and gone %d times while being ensured: %w", lostRaces, bridge.ErrUnavailable))
}
