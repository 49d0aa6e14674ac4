package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Webhook ingest (MessageService.Ingest, POST /v1/subjects/{subject}:ingest)
// takes its body raw, of any media type. grpc-gateway v2 cannot do that by
// itself: it decodes every request body, whatever the field's type (even a
// google.api.HttpBody), with the marshaler registered for the request's
// Content-Type, JSON here (runtime.HTTPBodyMarshaler handles HttpBody
// responses only). So guard, once grpc-gateway has chosen the ingest
// route, marks the request with a media type of the gateway's own,
// mimeRawBody, whose marshaler (rawBody) reads the body as the bytes of
// IngestRequest.data, and puts what the HTTP request says beyond its body
// (its Content-Type and the headers the query names: ingestFields) in the
// request's context, from which the Ingest call takes them (ingestClient
// over the connection, directMessages.Ingest in process). A client cannot
// set either: the context value's key is this package's, and the media
// type is replaced whatever the client sent.

// mimeRawBody is the media type guard gives an ingest request's body (the
// client's own Content-Type is kept in ingestFields).
const mimeRawBody = "application/x-jetway-raw-body"

// anyMediaType in routePolicy.bodyTypes admits a body of any media type
// (or none).
const anyMediaType = "*/*"

// maxIngestHeaders bounds the header query parameters of one ingest.
const maxIngestHeaders = 16

// Ingest's query parameters (besides access_token, which queryTokens has
// taken out of the URL by then).
const (
	ingestHeaderParam = "header"
	ingestDedupeParam = "dedupe_header"
	ingestMsgIDParam  = "msg_id"
)

// refusedIngestHeaders may not be copied into a message nor be the dedupe
// header: hop-by-hop headers (RFC 9110 7.6.1; they describe the
// connection to the bridge, not the message), credentials (a message is
// readable by whoever may consume the stream), what describes the HTTP
// message rather than its payload, and Content-Type, which is copied
// anyway. Nats-* names are refused as well (JetStream's own).
var refusedIngestHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Authorization", "Cookie", "Set-Cookie", "X-Api-Key",
	"Host", "Content-Length", "Content-Type", "Expect",
}

// ingestFields is what an ingest request carries beyond its body, for the
// IngestRequest fields grpc-gateway cannot fill.
type ingestFields struct {
	headers map[string]*jetwayv1.HeaderValues
	msgID   string
}

type ingestKey struct{}

// fill sets the fields guard found in the HTTP request of ctx on req.
func fillIngest(ctx context.Context, req *jetwayv1.IngestRequest) {
	f, ok := ctx.Value(ingestKey{}).(*ingestFields)
	if !ok {
		return
	}
	if len(f.headers) > 0 {
		// grpc-gateway fills no headers: the query cannot name them
		// (prepareIngest refuses headers[…]).
		req.Headers = f.headers
	}
	if f.msgID != "" {
		req.MsgId = f.msgID
	}
}

// prepareIngest reads an ingest request's query and headers into
// ingestFields, and returns the request as grpc-gateway must see it: the
// fields in its context and mimeRawBody as its Content-Type. A refused
// query is answered here (400) and nil returned.
func prepareIngest(w http.ResponseWriter, r *http.Request) *http.Request {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, invalidParameter("", "the query string is not valid URL encoding"))
		return nil
	}
	for _, key := range sortedKeys(query) {
		switch key {
		case ingestHeaderParam:
		case ingestDedupeParam, ingestMsgIDParam:
			if len(query[key]) > 1 {
				writeStatus(w, http.StatusBadRequest, invalidParameter(key, "given more than once"))
				return nil
			}
		default:
			writeStatus(w, http.StatusBadRequest, invalidParameter(key,
				"not a parameter of this request (ingest takes header, dedupe_header, msg_id and access_token)"))
			return nil
		}
	}
	refuse := func(msg string) *http.Request {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "INVALID_HEADER", msg)
		return nil
	}
	f := &ingestFields{headers: map[string]*jetwayv1.HeaderValues{}}
	if ct := r.Header.Values("Content-Type"); len(ct) > 0 {
		f.headers["Content-Type"] = &jetwayv1.HeaderValues{Values: ct}
	}
	names := query[ingestHeaderParam]
	if len(names) > maxIngestHeaders {
		return refuse(fmt.Sprintf("at most %d header parameters, got %d", maxIngestHeaders, len(names)))
	}
	var seen []string
	for _, name := range names {
		if why := refuseIngestHeader(name); why != "" {
			return refuse(fmt.Sprintf("header=%q: %s", clip(name), why))
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if slices.Contains(seen, canon) {
			return refuse(fmt.Sprintf("header=%q: named twice", clip(name)))
		}
		seen = append(seen, canon)
		if vs := r.Header.Values(name); len(vs) > 0 {
			// The name as the query gives it: NATS headers keep
			// their case.
			f.headers[name] = &jetwayv1.HeaderValues{Values: slices.Clone(vs)}
		}
	}
	var ids []string
	if d := query.Get(ingestDedupeParam); d != "" {
		if why := refuseIngestHeader(d); why != "" {
			return refuse(fmt.Sprintf("dedupe_header=%q: %s", clip(d), why))
		}
		v := r.Header.Get(d)
		if v == "" {
			return refuse(fmt.Sprintf("dedupe_header=%q: the request has no such header, so it cannot be deduplicated", clip(d)))
		}
		f.msgID = v
		ids = append(ids, "dedupe_header")
	}
	if query.Has(ingestMsgIDParam) {
		ids = append(ids, "msg_id")
	}
	if r.Header.Get("Idempotency-Key") != "" {
		ids = append(ids, "the Idempotency-Key header")
	}
	if len(ids) > 1 {
		writeStatus(w, http.StatusBadRequest, invalidParameter(ingestMsgIDParam,
			"the message id is given twice ("+strings.Join(ids, " and ")+"): give one"))
		return nil
	}
	r2 := r.WithContext(context.WithValue(r.Context(), ingestKey{}, f))
	r2.Header = r.Header.Clone()
	r2.Header.Set("Content-Type", mimeRawBody)
	return r2
}

// refuseIngestHeader says why a header may not be copied into a message
// or be its dedupe header; "" when it may.
func refuseIngestHeader(name string) string {
	if name == "" {
		return "empty header name"
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return "not a header name"
		}
	}
	if len(name) >= 5 && strings.EqualFold(name[:5], "Nats-") {
		return "Nats-* headers are JetStream's own"
	}
	for _, h := range refusedIngestHeaders {
		if strings.EqualFold(name, h) {
			return "a hop-by-hop, credential or HTTP framing header (Content-Type is copied anyway)"
		}
	}
	return ""
}

// isTokenChar reports whether c may be in an HTTP field name (RFC 9110
// token).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// clip shortens a client string for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// rawBody is the marshaler of mimeRawBody: it decodes a body as the raw
// bytes of IngestRequest.data, and marshals (responses, errors) as the
// JSON marshaler it wraps, since grpc-gateway answers with the request's
// marshaler when the Accept header names none.
type rawBody struct {
	runtime.Marshaler
}

// NewDecoder reads all of r (limitBody has bounded it) into a *[]byte.
func (rawBody) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		p, ok := v.(*[]byte)
		if !ok {
			return fmt.Errorf("a raw body cannot be decoded into %T", v)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("read the request body: %w", err)
		}
		*p = b
		return nil
	})
}

// ingestClient is the connection's MessageService client, with Ingest
// given the fields of its HTTP request.
type ingestClient struct {
	jetwayv1.MessageServiceClient
}

func (c ingestClient) Ingest(ctx context.Context, in *jetwayv1.IngestRequest, opts ...grpc.CallOption) (*jetwayv1.IngestResponse, error) {
	fillIngest(ctx, in)
	return c.MessageServiceClient.Ingest(ctx, in, opts...)
}
