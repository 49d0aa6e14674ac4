package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/bridge/acktoken"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// LastEventIDMetadata is the metadata key the gateway fills from the SSE
// Last-Event-ID header: an ephemeral Subscribe resumes after that stream
// sequence.
const LastEventIDMetadata = "last-event-id"

const (
	defaultInFlight      = 256
	defaultBytesInFlight = 8 << 20
	defaultHeartbeat     = 15 * time.Second
	// ephemeralInactive removes an ephemeral consumer whose bridge vanished
	// without deleting it (a crash): that long after the ack wait of the
	// last message it held (JetStream counts from there). A live stream keeps
	// it active: a request always waits, or it holds messages.
	ephemeralInactive = 10 * time.Second
	// maxTracked bounds the deliveries a Subscribe remembers for NAK on
	// close; older ones just wait out their ack wait.
	maxTracked = 1 << 16
)

// subscription is one Subscribe or Consume stream's consumer and window.
type subscription struct {
	js          jetstream.JetStream // the connection it runs on
	meta        consumerMeta
	info        *jetwayv1.Subscribed
	heartbeat   time.Duration
	format      jetwayv1.PayloadFormat
	window      int
	windowBytes int
	batch       int // messages per event; above 1, sent as batch events
	identity    string
	prio        pullPriority // the priority group its pulls are for
}

// maxBatch bounds max_batch.
const maxBatch = 1000

// open takes the caller's connection (held until release) and resolves the
// consumer a Subscribe or Consume names on it.
func (s *messageService) open(ctx context.Context, prefix string, req *jetwayv1.SubscribeRequest) (*subscription, func(), error) {
	js, release, err := s.conns.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	// The resolving (JSON, JetStream API requests) runs on a goroutine of
	// its own that ends with it: the stack it grows goes with it, while
	// the stream's goroutine, which lives as long as the stream, keeps the
	// small stack an idle stream needs (measured: 16 KiB instead of 32
	// KiB per idle stream).
	//
	// The requests get a deadline here, released when the resolving ends:
	// without one, nats.go gives each request a timeout context of its
	// own, whose timer keeps it (and the request's state) alive for the
	// whole timeout after the answer came, about 0.8 KiB per stream opened.
	var sub *subscription
	done := make(chan struct{})
	go func() {
		defer close(done)
		rctx := ctx
		if d := js.Options().DefaultTimeout; d > 0 {
			// Not a child of the stream's context: that would give it a
			// map of children, kept (empty) as long as the stream, 256 B.
			// It keeps the client's deadline when that is sooner; a client
			// that leaves meanwhile ends the stream right after.
			dl := time.Now().Add(d)
			if cdl, ok := ctx.Deadline(); ok && cdl.Before(dl) {
				dl = cdl
			}
			var cancel context.CancelFunc
			rctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), dl)
			defer cancel()
		}
		sub, err = s.resolve(rctx, js, prefix, req)
	}()
	<-done
	if err != nil {
		release()
		return nil, nil, err
	}
	return sub, release, nil
}

// resolve finds the consumer a Subscribe or Consume names: attaches to a
// durable one (creating it from the request's config when it does not
// exist and a config is given), or creates an ephemeral one.
func (s *messageService) resolve(ctx context.Context, js jetstream.JetStream, prefix string, req *jetwayv1.SubscribeRequest) (*subscription, error) {
	if err := validateName(prefix+"stream", req.GetStream()); err != nil {
		return nil, err
	}
	sub := &subscription{js: js, format: req.GetFormat(), window: defaultInFlight, windowBytes: defaultBytesInFlight, heartbeat: defaultHeartbeat}
	switch n := req.GetMaxInFlight(); {
	case n < 0 || int(n) > s.caps.MaxInFlight:
		return nil, fieldErr(prefix+"max_in_flight", ErrInvalidArgument, "must be between 1 and %d (the server's cap)", s.caps.MaxInFlight)
	case n > 0:
		sub.window = int(n)
	}
	switch n := req.GetMaxBytesInFlight(); {
	case n < 0 || n > int64(s.caps.MaxBytesInFlight):
		return nil, fieldErr(prefix+"max_bytes_in_flight", ErrInvalidArgument, "must be between 1 and %d (the server's cap)", s.caps.MaxBytesInFlight)
	case n > 0:
		sub.windowBytes = int(n)
	}
	switch n := req.GetMaxBatch(); {
	case n < 0 || n > maxBatch:
		return nil, fieldErr(prefix+"max_batch", ErrInvalidArgument, "must be between 0 and %d", maxBatch)
	default:
		sub.batch = max(1, int(n))
	}
	if hb := req.GetHeartbeat(); hb != nil {
		d := hb.AsDuration()
		if hb.CheckValid() != nil || d < time.Second || d > 5*time.Minute {
			return nil, fieldErr(prefix+"heartbeat", ErrInvalidArgument, "must be between 1s and 5m")
		}
		sub.heartbeat = d
	}
	prio, err := priorityFrom(prefix+"priority", req.GetPriority())
	if err != nil {
		return nil, err
	}
	sub.prio = prio
	if err := s.authz.CanConsume(ctx, req.GetStream(), req.GetConsumer()); err != nil {
		return nil, err
	}
	info := &jetwayv1.Subscribed{Stream: req.GetStream(), MaxInFlight: int32(sub.window), MaxBytesInFlight: int64(sub.windowBytes)}
	var cons jetstream.Consumer
	if name := req.GetConsumer(); name != "" {
		if err := validateName(prefix+"consumer", name); err != nil {
			return nil, err
		}
		cons, err = js.Consumer(ctx, req.GetStream(), name)
		switch {
		case err == nil:
			info.ConfigIgnored = req.GetConfig() != nil
		case errors.Is(err, jetstream.ErrConsumerNotFound) && req.GetConfig() != nil:
			c := req.GetConfig()
			if c.GetName() != "" && c.GetName() != name {
				return nil, fieldErr(prefix+"config.name", ErrInvalidArgument, "must be empty or %q", name)
			}
			named := proto.CloneOf(c)
			named.Name = name
			cfg, err := consumerConfigFrom(prefix+"config", named)
			if err != nil {
				return nil, err
			}
			// A durable outlives the call: creating one takes a grant of
			// its own. It reads only what the caller may.
			if err := s.authz.CanCreateDurable(ctx, req.GetStream(), name); err != nil {
				return nil, err
			}
			if err := s.authz.CanReadSubjects(ctx, filtersOf(cfg)); err != nil {
				return nil, err
			}
			if err := canDeadLetter(ctx, s.authz, prefix+"config.dead_letter_subject", cfg); err != nil {
				return nil, err
			}
			if err := needsGroup(prefix+"priority", cfg, sub.prio); err != nil {
				return nil, err
			}
			if cons, err = js.CreateConsumer(ctx, req.GetStream(), cfg); err != nil {
				return nil, translate(err, fmt.Sprintf("create consumer %q on stream %q", name, req.GetStream()))
			}
			info.Created = true
		default:
			return nil, translate(err, fmt.Sprintf("consumer %q on stream %q", name, req.GetStream()))
		}
	} else {
		cfg, err := s.ephemeralConfig(ctx, prefix, req.GetConfig())
		if err != nil {
			return nil, err
		}
		if err := s.authz.CanReadSubjects(ctx, filtersOf(cfg)); err != nil {
			return nil, err
		}
		if err := canDeadLetter(ctx, s.authz, prefix+"config.dead_letter_subject", cfg); err != nil {
			return nil, err
		}
		if err := needsGroup(prefix+"priority", cfg, sub.prio); err != nil {
			return nil, err
		}
		if cons, err = js.CreateConsumer(ctx, req.GetStream(), cfg); err != nil {
			return nil, translate(err, fmt.Sprintf("create an ephemeral consumer on stream %q", req.GetStream()))
		}
		info.Created, info.Ephemeral = true, true
	}
	// Only the name and the ack settings stay: the consumer's whole
	// cached info (1.6 KiB) would live as long as the stream.
	ci := cons.CachedInfo()
	if err := needsGroup(prefix+"priority", ci.Config, sub.prio); err != nil {
		return nil, err // an existing durable (a created one was checked before)
	}
	info.Consumer = ci.Name
	sub.meta = metaOf(ci.Config)
	sub.info = info
	sub.identity = s.authz.Identity(ctx)
	return sub, nil
}

func filtersOf(cfg jetstream.ConsumerConfig) []string {
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return cfg.FilterSubjects
}

// ephemeralConfig builds an ephemeral consumer's configuration from the
// request's (start position, filters, ack settings), resuming after an SSE
// Last-Event-ID when the client sent one.
func (s *messageService) ephemeralConfig(ctx context.Context, prefix string, c *jetwayv1.ConsumerConfig) (jetstream.ConsumerConfig, error) {
	named := &jetwayv1.ConsumerConfig{}
	if c != nil {
		if c.GetName() != "" {
			return jetstream.ConsumerConfig{}, fieldErr(prefix+"config.name", ErrInvalidArgument, "must be empty for an ephemeral consumer (or set consumer)")
		}
		named = proto.CloneOf(c)
	}
	named.Name = "ephemeral"
	cfg, err := consumerConfigFrom(prefix+"config", named)
	if err != nil {
		return cfg, err
	}
	cfg.Durable = ""
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = ephemeralInactive
	}
	if v := metadata.ValueFromIncomingContext(ctx, LastEventIDMetadata); len(v) > 0 && v[0] != "" {
		seq, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return cfg, fieldErr("Last-Event-ID", ErrInvalidArgument, "must be a stream sequence")
		}
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, seq+1, nil
	}
	return cfg, nil
}

// consumerSeq is the consumer sequence of a JetStream ack reply: the
// order in which the consumer delivered it (0 if it cannot be read).
func consumerSeq(reply string) uint64 {
	r, err := acktoken.ParseReply(reply)
	if err != nil {
		return 0
	}
	return r.ConsumerSeq
}

// delivery is a message handed to the client and not known to be acked.
type delivery struct {
	reply    string
	deadline time.Time
	size     int // counted against max_bytes_in_flight
}

// nakUnexpired NAKs the deliveries whose ack deadline has not passed, so
// that JetStream redelivers them at once instead of after the ack wait. A
// NAK of a message already acked is ignored by JetStream; a delivery past
// its deadline is skipped, since the server may have redelivered it to
// someone else.
func nakUnexpired(nc *nats.Conn, ds []delivery) int {
	now := time.Now()
	n := 0
	for _, d := range ds {
		if d.deadline.After(now) {
			if nc.Publish(d.reply, []byte("-NAK")) == nil {
				n++
			}
		}
	}
	if n > 0 && nc.IsConnected() {
		// While disconnected the NAKs wait in the reconnect buffer and go
		// out on reconnect; a flush would only block.
		_ = nc.FlushTimeout(time.Second)
	}
	return n
}

// closeSubscription ends a stream's consumer use: stops its puller (nil
// if none started), NAKs what the client holds and then what the puller
// holds, so that JetStream redelivers them in delivery order, and removes
// an ephemeral consumer. held is in delivery order.
func (s *messageService) closeSubscription(sub *subscription, p *puller, held []delivery) {
	nc := sub.js.Conn()
	if p != nil {
		// No pull stays open: the NAKed messages must not come straight
		// back to this puller (a delivery attempt spent for nothing).
		pulled := p.halt()
		if pulled && (len(held) > 0 || len(p.ch) > 0) && nc.IsConnected() {
			// nats-server forgets a pull request whose interest went only
			// when it next tries to deliver: it would then take the first
			// NAKed message, find no one waiting and put it back last.
			// A consumer info request makes it drop them first.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = sub.js.Consumer(ctx, sub.info.GetStream(), sub.info.GetConsumer())
			cancel()
		}
	}
	nakUnexpired(nc, held)
	if p != nil {
		p.dropBuffered(!sub.meta.ackNone)
		if p.dropped > 0 {
			s.log.Warn("pull inbox dropped messages", slog.Int("dropped", p.dropped), slog.String("stream", sub.info.GetStream()), slog.String("consumer", sub.info.GetConsumer()))
		}
	}
	// An ephemeral consumer left behind while NATS is away is removed by
	// the server after its inactive threshold.
	if sub.info.GetEphemeral() && nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = sub.js.DeleteConsumer(ctx, sub.info.GetStream(), sub.info.GetConsumer())
	}
}

// deliver converts m for the client at now. since is the earliest time m
// can have reached the bridge (zero: unknown). A message that may have
// waited in the bridge for longer than its token's margin (a slow client
// let it sit in the inbox) gets an in-progress ack first: JetStream's ack
// wait then restarts now, with the token's, so the token never outlives
// the delivery and the client gets the whole ack wait, whatever the
// message spent in the bridge.
func (s *messageService) deliver(sub *subscription, m *nats.Msg, since, now time.Time) (*jetwayv1.Message, delivery, error) {
	out, err := s.toMessage(m.Subject, m.Reply, m.Header, m.Data, sub.meta, sub.format, sub.identity, now)
	if err != nil {
		return nil, delivery{}, err
	}
	if !sub.meta.ackNone {
		if wait := sub.meta.ackWaitFor(out.GetNumDelivered()); since.IsZero() || now.Sub(since) > deadlineMargin(wait) {
			if err := sub.js.Conn().Publish(m.Reply, progressBody); err != nil {
				return nil, delivery{}, translate(err, "restart the ack wait of a message that waited in the bridge")
			}
		}
	}
	return out, delivery{reply: m.Reply, deadline: out.GetAckDeadline().AsTime(), size: m.Size()}, nil
}

var progressBody = []byte("+WPI")

func heartbeatEvent(now time.Time) *jetwayv1.Heartbeat {
	return &jetwayv1.Heartbeat{Time: timestamppb.New(now)}
}

// Subscribe streams a consumer's messages until the client leaves, the
// consumer goes away or the bridge shuts down.
func (s *messageService) Subscribe(req *jetwayv1.SubscribeRequest, stream jetwayv1.MessageService_SubscribeServer) error {
	s.obs.StreamOpened("subscribe")
	defer s.obs.StreamClosed("subscribe")
	ctx := stream.Context()
	sub, release, err := s.open(ctx, "", req)
	if err != nil {
		return err
	}
	defer release()
	sess, closeSession := s.openSession(ctx, jetwayv1.SessionKind_SESSION_KIND_SUBSCRIBE, sub)
	defer closeSession()
	var (
		held heldRing
		p    *puller
	)
	defer func() { s.closeSubscription(sub, p, held.all()) }()
	if err := stream.Send(&jetwayv1.SubscribeResponse{Event: &jetwayv1.SubscribeResponse_Subscribed{Subscribed: sub.info}}); err != nil {
		return err
	}
	if p, err = startPuller(sub, s.grid); err != nil {
		return err
	}
	// The heartbeat moves on at every send: an idle stream hears from the
	// bridge once per interval (see streamClock).
	keep := held.add
	clock := newStreamClock(s.grid, sub.heartbeat, p.due)
	send := func(out []*jetwayv1.Message) error {
		ev := &jetwayv1.SubscribeResponse{Event: &jetwayv1.SubscribeResponse_Message{Message: out[0]}}
		if sub.batch > 1 {
			ev.Event = &jetwayv1.SubscribeResponse_Batch{Batch: &jetwayv1.MessageBatch{Messages: out}}
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
		sess.delivered.Add(uint64(len(out)))
		clock.sent(time.Now())
		return nil
	}
	end := s.conn.endCh()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			return s.conn.ended()
		case m := <-p.ch:
			if err := s.arrived(ctx, sub, p, m, keep, send); err != nil {
				return err
			}
		case <-clock.ch:
			at, beat := clock.woke()
			p.tick(at)
			if beat {
				if err := p.idle(ctx); err != nil {
					return err
				}
				now := time.Now()
				held.trim(now, maxTracked)
				if err := stream.Send(&jetwayv1.SubscribeResponse{Event: &jetwayv1.SubscribeResponse_Heartbeat{Heartbeat: heartbeatEvent(now)}}); err != nil {
					return err
				}
				clock.sent(now)
			}
		}
		// Pull more once the client has taken half the window.
		if err := p.fill(0, 0, time.Now()); err != nil {
			return err
		}
		clock.rearm(p.due)
	}
}

// arrived handles what the inbox brought: a status reply, or messages,
// which go to the client in one event (send) before any error that came
// after them.
func (s *messageService) arrived(ctx context.Context, sub *subscription, p *puller, m *nats.Msg, keep func(delivery, time.Time), send func([]*jetwayv1.Message) error) error {
	now := time.Now()
	if isStatus(m) {
		return p.status(ctx, m, now)
	}
	out, err := s.take(ctx, sub, p, m, now, keep)
	if len(out) > 0 {
		if serr := send(out); serr != nil {
			return serr
		}
	}
	return err
}

// take converts m and, with max_batch, the messages that have already
// arrived after it (up to max_batch), handling status replies on the way;
// keep records each delivery that expects an ack. When a status reply ends
// the stream, the messages before it come with the error, to be sent
// first.
func (s *messageService) take(ctx context.Context, sub *subscription, p *puller, m *nats.Msg, now time.Time, keep func(delivery, time.Time)) ([]*jetwayv1.Message, error) {
	out := make([]*jetwayv1.Message, 0, min(sub.batch, 1+len(p.ch)))
	for {
		since := p.received(m)
		s.tracer.Deliver(ctx, m)
		msg, d, err := s.deliver(sub, m, since, now)
		if err != nil {
			return out, err
		}
		if !sub.meta.ackNone {
			keep(d, now)
		}
		out = append(out, msg)
		if len(out) >= sub.batch {
			return out, nil
		}
		for m = nil; m == nil; {
			select {
			case next := <-p.ch:
				if !isStatus(next) {
					m = next
				} else if err := p.status(ctx, next, now); err != nil {
					return out, err
				}
			default:
				return out, nil
			}
		}
	}
}

// heldRing remembers a Subscribe's deliveries for NAK on close, in time
// order, dropping the expired ones at the front and the oldest past
// maxTracked. It is a ring: a busy stream holds a whole ack wait of
// deliveries (up to 65,536), and a slice re-sliced at the front and
// appended at the back reallocated and copied all of them every few
// thousand messages (7.5 % of the bridge's CPU in Subscribe + Ack).
type heldRing struct {
	buf     []delivery // len is a power of two, at most maxTracked
	head, n int
}

// add remembers d, delivered at now.
func (h *heldRing) add(d delivery, now time.Time) {
	h.trim(now, maxTracked-1)
	if h.n == len(h.buf) {
		h.resize(max(16, 2*len(h.buf)))
	}
	h.buf[(h.head+h.n)&(len(h.buf)-1)] = d
	h.n++
}

// trim drops the deliveries expired at now, and the oldest past keep;
// a ring left a quarter full after a burst is halved, so that a stream
// that goes quiet does not keep a burst's worth of memory. The heartbeat
// calls it too, for a stream that no longer delivers.
func (h *heldRing) trim(now time.Time, keep int) {
	for h.n > 0 && (!h.buf[h.head].deadline.After(now) || h.n > keep) {
		h.buf[h.head] = delivery{} // let its reply go
		h.head = (h.head + 1) & (len(h.buf) - 1)
		h.n--
	}
	if len(h.buf) > 16 && h.n < len(h.buf)/4 {
		h.resize(len(h.buf) / 2)
	}
}

// resize moves the deliveries to a ring of size (a power of two, at least
// h.n), oldest first.
func (h *heldRing) resize(size int) {
	buf := make([]delivery, size)
	h.copyTo(buf)
	h.buf, h.head = buf, 0
}

// copyTo copies the deliveries, oldest first, to the front of dst.
func (h *heldRing) copyTo(dst []delivery) {
	k := copy(dst, h.buf[h.head:min(h.head+h.n, len(h.buf))])
	copy(dst[k:], h.buf[:h.n-k])
}

// all is the deliveries, oldest first.
func (h *heldRing) all() []delivery {
	out := make([]delivery, h.n)
	h.copyTo(out)
	return out
}

// Consume is Subscribe with acks on the same stream and an exact window:
// the bridge hands over a message only while fewer than max_in_flight are
// delivered and unacked.
func (s *messageService) Consume(stream jetwayv1.MessageService_ConsumeServer) error {
	s.obs.StreamOpened("consume")
	defer s.obs.StreamClosed("consume")
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return fieldErr("start", ErrInvalidArgument, "the first request must be start")
	}
	sub, release, err := s.open(ctx, "start.", start)
	if err != nil {
		return err
	}
	defer release()
	sess, closeSession := s.openSession(ctx, jetwayv1.SessionKind_SESSION_KIND_CONSUME, sub)
	defer closeSession()
	inFlight := make(map[string]delivery)
	var p *puller
	defer func() {
		held := make([]delivery, 0, len(inFlight))
		heldBytes := 0
		for _, d := range inFlight {
			held = append(held, d)
			heldBytes += d.size
		}
		s.obs.InFlight(-len(held), -heldBytes)
		// The map forgot the order: delivery order is the consumer
		// sequence of each reply.
		slices.SortFunc(held, func(a, b delivery) int { return cmp.Compare(consumerSeq(a.reply), consumerSeq(b.reply)) })
		s.closeSubscription(sub, p, held)
	}()
	if err := stream.Send(&jetwayv1.ConsumeResponse{Event: &jetwayv1.ConsumeResponse_Subscribed{Subscribed: sub.info}}); err != nil {
		return err
	}
	if p, err = startPuller(sub, s.grid); err != nil {
		return err
	}

	// The reader ends when Recv fails: at the client's half-close (EOF) or
	// when the RPC ends, which is when this handler returns.
	acks := make(chan []*jetwayv1.AckOperation)
	readErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				readErr <- err
				return
			}
			var ops []*jetwayv1.AckOperation
			switch r := req.GetRequest().(type) {
			case *jetwayv1.ConsumeRequest_Ack:
				ops = []*jetwayv1.AckOperation{r.Ack}
			case *jetwayv1.ConsumeRequest_Acks:
				ops = r.Acks.GetOperations()
				if len(ops) == 0 || len(ops) > s.caps.MaxAckBatch {
					readErr <- fieldErr("acks.operations", ErrInvalidArgument, "between 1 and %d operations (the server's cap)", s.caps.MaxAckBatch)
					return
				}
			default:
				readErr <- fieldErr("ack", ErrInvalidArgument, "every request after start must be an ack or acks")
				return
			}
			select {
			case acks <- ops:
			case <-ctx.Done():
				return
			}
		}
	}()

	// The window counts what the client holds (inFlight) and what the
	// open pull requests may still bring: never more than max_in_flight
	// messages and max_bytes_in_flight bytes in all.
	inFlightBytes := 0
	forget := func(reply string) {
		if d, ok := inFlight[reply]; ok {
			inFlightBytes -= d.size
			delete(inFlight, reply)
			s.obs.InFlight(-1, -d.size)
		}
	}
	keep := func(d delivery, _ time.Time) {
		if old, ok := inFlight[d.reply]; ok {
			s.obs.InFlight(-1, -old.size)
			inFlightBytes -= old.size
		}
		inFlight[d.reply] = d
		inFlightBytes += d.size
		s.obs.InFlight(1, d.size)
	}
	clock := newStreamClock(s.grid, sub.heartbeat, p.due)
	send := func(out []*jetwayv1.Message) error {
		ev := &jetwayv1.ConsumeResponse{Event: &jetwayv1.ConsumeResponse_Message{Message: out[0]}}
		if sub.batch > 1 {
			ev.Event = &jetwayv1.ConsumeResponse_Batch{Batch: &jetwayv1.MessageBatch{Messages: out}}
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
		sess.delivered.Add(uint64(len(out)))
		clock.sent(time.Now())
		return nil
	}
	end := s.conn.endCh()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			return s.conn.ended()
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil // the client is done: NAK what it holds
			}
			return err
		case ops := <-acks:
			now := time.Now()
			for _, op := range ops {
				res, reply, _ := s.ackOne(ctx, sub.js, op, false, 0, now)
				if res.GetError() == nil {
					sess.countAck(op.GetKind())
					if d, ok := inFlight[reply]; ok && op.GetKind() == jetwayv1.AckKind_ACK_KIND_IN_PROGRESS {
						// Still held, with the extended deadline.
						d.deadline = res.GetAckDeadline().AsTime()
						inFlight[reply] = d
					} else {
						forget(reply)
					}
				}
				if res.GetError() != nil || res.GetNewToken() != "" {
					if err := stream.Send(&jetwayv1.ConsumeResponse{Event: &jetwayv1.ConsumeResponse_AckResult{AckResult: res}}); err != nil {
						return err
					}
					clock.sent(now)
				}
			}
		case m := <-p.ch:
			if err := s.arrived(ctx, sub, p, m, keep, send); err != nil {
				return err
			}
		case <-clock.ch:
			at, beat := clock.woke()
			p.tick(at)
			if !beat {
				break
			}
			now := time.Now()
			// Deliveries past their deadline are JetStream's again: they no
			// longer count against the window.
			for r, d := range inFlight {
				if !d.deadline.After(now) {
					forget(r)
				}
			}
			if err := p.idle(ctx); err != nil {
				return err
			}
			if err := stream.Send(&jetwayv1.ConsumeResponse{Event: &jetwayv1.ConsumeResponse_Heartbeat{Heartbeat: heartbeatEvent(now)}}); err != nil {
				return err
			}
			clock.sent(now)
		}
		// The session views read these; one store per turn of the loop.
		sess.inFlight.Store(int64(len(inFlight)))
		sess.inFlightBytes.Store(int64(inFlightBytes))
		if err := p.fill(len(inFlight), inFlightBytes, time.Now()); err != nil {
			return err
		}
		clock.rearm(p.due)
	}
}
