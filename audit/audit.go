// Package audit writes the bridge's audit log: who did what, when, and
// with what outcome, for the events an operator or a security review
// asks about:
//
//   - admin.write: every call that changes streams, consumers or messages
//     through AdminService (create, update, delete, purge), with its
//     outcome (OK or the gRPC code and reason);
//   - authorization.refused: every permission check that refused an
//     authenticated identity (publish, consume, admin, subjects), from
//     every RPC, including one message of a PublishStream;
//   - authentication.refused: every credential the bridge refused (written
//     by package auth through Logger).
//
// A record is a log/slog record with the message "audit" and the
// attribute log=audit, so that it can be routed (or grepped) apart from
// the operational log; --audit-log FILE writes them as JSON lines to a
// file of their own. Each carries the call's request_id (package
// requestid), the identity's configured name (never its credential), the
// method, the resources named in the request (stream, consumer, subject)
// and the peer address. Refusals are rate-limited (RefusalsPerSecond, a
// "suppressed" count on the next line written) so that a client in a
// loop cannot flood the disk; admin writes never are.
package audit

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/logsafe"
)

// Message is every audit record's message; Attr marks it.
const Message = "audit"

// Attr is the attribute that marks an audit record: log=audit.
var Attr = slog.String("log", "audit")

// Refusal lines per second (and burst) before they are counted rather than
// written.
const (
	RefusalsPerSecond = 50
	RefusalBurst      = 200
)

// maxValue clips what a request names (a subject, a reason) in a record.
const maxValue = 256

// Logger writes audit records.
type Logger struct {
	log      *slog.Logger
	refusals *logsafe.Limiter
}

// New returns a Logger writing to log (each record gets Attr).
func New(log *slog.Logger) *Logger {
	log = log.With(Attr)
	return &Logger{log: log, refusals: logsafe.NewLimiter(log, RefusalsPerSecond, RefusalBurst)}
}

// Slog is the logger audit records go to (with Attr), for package auth's
// authentication refusals.
func (l *Logger) Slog() *slog.Logger { return l.log }

type methodKey struct{}

// withMethod remembers the call's method for the refusals its permission
// checks log (grpc.Method does not know the gateway's direct calls).
func withMethod(ctx context.Context, method string) context.Context {
	return context.WithValue(ctx, methodKey{}, method)
}

func method(ctx context.Context) string {
	if m, ok := ctx.Value(methodKey{}).(string); ok {
		return m
	}
	m, _ := grpc.Method(ctx)
	return m
}

func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func identityOf(ctx context.Context) string {
	if id := auth.FromContext(ctx); id != nil {
		return id.Name
	}
	return ""
}

// adminWrites are the AdminService (and KVService bucket) methods that
// change something.
var adminWrites = map[string]bool{
	jetwayv1.AdminService_CreateStream_FullMethodName:   true,
	jetwayv1.AdminService_UpdateStream_FullMethodName:   true,
	jetwayv1.AdminService_DeleteStream_FullMethodName:   true,
	jetwayv1.AdminService_PurgeStream_FullMethodName:    true,
	jetwayv1.AdminService_CreateConsumer_FullMethodName: true,
	jetwayv1.AdminService_UpdateConsumer_FullMethodName: true,
	jetwayv1.AdminService_DeleteConsumer_FullMethodName: true,
	jetwayv1.AdminService_DeleteMessage_FullMethodName:  true,
	// Key-value (issue 18): bucket admin writes.
	jetwayv1.KVService_CreateBucket_FullMethodName: true,
	jetwayv1.KVService_UpdateBucket_FullMethodName: true,
	jetwayv1.KVService_DeleteBucket_FullMethodName: true,
	// consume (issue 18): consumer control
	jetwayv1.AdminService_PauseConsumer_FullMethodName:  true,
	jetwayv1.AdminService_ResumeConsumer_FullMethodName: true,
	jetwayv1.AdminService_ResetConsumer_FullMethodName:  true,
	jetwayv1.AdminService_UnpinConsumer_FullMethodName:  true,
	// deadletters (issue 19): a redrive publishes and deletes dead letters
	jetwayv1.DeadLetterService_RedriveDeadLetters_FullMethodName: true,
	// push (issue 19): push subscription writes
	jetwayv1.PushService_CreatePushSubscription_FullMethodName: true,
	jetwayv1.PushService_UpdatePushSubscription_FullMethodName: true,
	jetwayv1.PushService_DeletePushSubscription_FullMethodName: true,
}

// IsAdminWrite reports whether method is audited as an admin write.
func IsAdminWrite(method string) bool { return adminWrites[method] }

// UnaryServerInterceptor audits admin writes and remembers each call's
// method for its refusals. It runs after authentication (it reads the
// identity) and sees what the handler returned.
func (l *Logger) UnaryServerInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx = withMethod(ctx, info.FullMethod)
	resp, err := handler(ctx, req)
	if adminWrites[info.FullMethod] {
		l.adminWrite(ctx, info.FullMethod, req, err)
	}
	return resp, err
}

// StreamServerInterceptor remembers each streaming call's method for its
// refusals (no streaming method is an admin write).
func (l *Logger) StreamServerInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &stream{ServerStream: ss, ctx: withMethod(ss.Context(), info.FullMethod)})
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

func (l *Logger) adminWrite(ctx context.Context, method string, req any, err error) {
	attrs := []slog.Attr{
		slog.String("event", "admin.write"),
		slog.String("identity", identityOf(ctx)),
		slog.String("method", method),
	}
	attrs = append(attrs, resources(req)...)
	attrs = append(attrs, outcome(err)...)
	attrs = append(attrs, slog.String("peer", peerOf(ctx)))
	l.log.LogAttrs(ctx, slog.LevelInfo, Message, attrs...)
}

// outcome is "ok", or the code and reason of err's status.
func outcome(err error) []slog.Attr {
	if err == nil {
		return []slog.Attr{slog.String("outcome", "ok")}
	}
	st, _ := bridge.Status(err)
	info, _ := bridge.ErrorProto(err)
	return []slog.Attr{
		slog.String("outcome", "error"),
		slog.String("code", st.Code().String()),
		slog.String("reason", info.GetReason()),
		slog.String("error", logsafe.Clip(st.Message(), maxValue)),
	}
}

// resourceFields are the request fields that name what a call acts on,
// at the top of the request or in its config.
var resourceFields = []protoreflect.Name{"stream", "name", "consumer", "subject", "durable_name", "bucket"}

// resources names what req acts on: its stream, consumer and subject
// fields (and those of its config), never its payload.
func resources(req any) []slog.Attr {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	var attrs []slog.Attr
	seen := map[string]bool{}
	add := func(msg protoreflect.Message, prefix string) {
		fields := msg.Descriptor().Fields()
		for _, n := range resourceFields {
			fd := fields.ByName(n)
			if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
				continue
			}
			v := msg.Get(fd).String()
			key := prefix + string(n)
			if v == "" || seen[key] {
				continue
			}
			seen[key] = true
			attrs = append(attrs, slog.String(key, logsafe.Clip(v, maxValue)))
		}
	}
	msg := m.ProtoReflect()
	add(msg, "")
	// The config of stream and consumer writes, the subscription of push
	// subscription writes (its stream, consumer and name; never its
	// endpoint, which may hold credentials).
	for _, nested := range []protoreflect.Name{"config", "subscription"} {
		if fd := msg.Descriptor().Fields().ByName(nested); fd != nil && fd.Kind() == protoreflect.MessageKind && msg.Has(fd) {
			add(msg.Get(fd).Message(), string(nested)+".")
		}
	}
	return attrs
}

// Authorizer returns a with every refusal audited (CanSee, a listing's
// filter, refuses nothing and is not).
func (l *Logger) Authorizer(a bridge.Authorizer) bridge.Authorizer {
	return authorizer{Authorizer: a, l: l}
}

type authorizer struct {
	bridge.Authorizer
	l *Logger
}

func (l *Logger) refused(ctx context.Context, check string, err error, attrs ...slog.Attr) error {
	if err == nil {
		return nil
	}
	if !errors.Is(err, auth.ErrForbidden) {
		return err // not a refusal (no identity: authentication's record)
	}
	all := []slog.Attr{
		slog.String("event", "authorization.refused"),
		slog.String("identity", identityOf(ctx)),
		slog.String("method", method(ctx)),
		slog.String("check", check),
	}
	if tid := auth.FromContext(ctx).TokenID(); tid != "" {
		// The access token's id, never the token.
		all = append(all, slog.String("access_token_id", tid))
	}
	all = append(all, attrs...)
	all = append(all, slog.String("error", logsafe.Clip(strings.TrimPrefix(err.Error(), auth.ErrForbidden.Error()+": "), maxValue)),
		slog.String("peer", peerOf(ctx)))
	l.refusals.Log(ctx, slog.LevelInfo, Message, all...)
	return err
}

func (a authorizer) CanPublish(ctx context.Context, subject string) error {
	return a.l.refused(ctx, "publish", a.Authorizer.CanPublish(ctx, subject), slog.String("subject", logsafe.Clip(subject, maxValue)))
}

func (a authorizer) CanConsume(ctx context.Context, stream, consumer string) error {
	return a.l.refused(ctx, "consume", a.Authorizer.CanConsume(ctx, stream, consumer), slog.String("stream", stream), slog.String("consumer", consumer))
}

func (a authorizer) CanReadSubjects(ctx context.Context, filters []string) error {
	return a.l.refused(ctx, "read_subjects", a.Authorizer.CanReadSubjects(ctx, filters), slog.String("subjects", logsafe.Clip(strings.Join(filters, ","), maxValue)))
}

func (a authorizer) CanAdmin(ctx context.Context, stream string, write bool) error {
	check := "admin_read"
	if write {
		check = "admin_write"
	}
	return a.l.refused(ctx, check, a.Authorizer.CanAdmin(ctx, stream, write), slog.String("stream", stream))
}

func (a authorizer) CanAdminSubjects(ctx context.Context, field string, subjects []string) error {
	return a.l.refused(ctx, "admin_subjects", a.Authorizer.CanAdminSubjects(ctx, field, subjects), slog.String("field", field), slog.String("subjects", logsafe.Clip(strings.Join(subjects, ","), maxValue)))
}

func (a authorizer) CanCreateDurable(ctx context.Context, stream, consumer string) error {
	return a.l.refused(ctx, "create_durable", a.Authorizer.CanCreateDurable(ctx, stream, consumer), slog.String("stream", stream), slog.String("consumer", consumer))
}

func (a authorizer) CanReadAccount(ctx context.Context) error {
	return a.l.refused(ctx, "read_account", a.Authorizer.CanReadAccount(ctx))
}

func (a authorizer) CanAck(ctx context.Context, stream string) error {
	return a.l.refused(ctx, "ack", a.Authorizer.CanAck(ctx, stream), slog.String("stream", stream))
}
