package gateway

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jetway-dev/jetway/bridge"
)

// badParameter explains why grpc-gateway refused a request's path or query
// parameters. grpc-gateway answers those with InvalidArgument and its
// parser's error chain as the message ("type mismatch, parameter:
// sequence, error: strconv.ParseUint: parsing …: value out of range"),
// keeping neither the parameter nor the error as values. So on such a
// refusal (InvalidArgument without details: every error of the bridge
// carries an ErrorInfo) the parameters are parsed again, one at a time,
// by the same grpc-gateway functions into the route's request type, and
// the first that fails is named with what it should be. It returns nil
// when every parameter parses: the refusal was the body's, or the
// bridge's.
func badParameter(ctx context.Context, rt *routeTable, r *http.Request, st *status.Status) *status.Status {
	if st.Code() != codes.InvalidArgument || len(st.Proto().GetDetails()) > 0 {
		return nil
	}
	pat, ok := runtime.HTTPPattern(ctx)
	if !ok {
		return nil
	}
	rte, ok := rt.lookup(r.Method, pat)
	if !ok {
		return nil
	}
	params, _ := rte.match(r.URL.Path)
	for _, name := range sortedKeys(params) {
		if err := runtime.PopulateFieldFromPath(rte.request.New().Interface(), name, params[name]); err != nil {
			return invalidParameter(name, describeField(rte.request.Descriptor(), name, 1))
		}
	}
	if rte.hasBody {
		return nil // grpc-gateway reads no query parameters
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return invalidParameter("", "the query string is not valid URL encoding")
	}
	for _, key := range sortedKeys(query) {
		one := url.Values{key: query[key]}
		if err := runtime.PopulateQueryParameters(rte.request.New().Interface(), one, rte.queryFilter); err != nil {
			return invalidParameter(key, describeField(rte.request.Descriptor(), key, len(query[key])))
		}
	}
	if err := runtime.PopulateQueryParameters(rte.request.New().Interface(), query, rte.queryFilter); err != nil {
		return invalidParameter("", "the query sets a field twice (by its name and its JSON name) or two fields of a oneof")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// invalidParameter is the status of a refused parameter: a message naming
// it, an ErrorInfo and a BadRequest field violation.
func invalidParameter(field, desc string) *status.Status {
	msg := desc
	if field != "" {
		msg = field + ": " + desc
	}
	st := status.New(codes.InvalidArgument, msg)
	withDetails, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: bridge.ErrorDomain},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: field, Description: desc, Reason: "INVALID_ARGUMENT",
		}}},
	)
	if err != nil {
		return st
	}
	return withDetails
}

// describeField says what the parameter at path (a dotted field path, by
// proto or JSON names, with [key] for a map entry) must be, for a
// parameter given n times.
func describeField(md protoreflect.MessageDescriptor, path string, n int) string {
	path, _, _ = strings.Cut(path, "[")
	var fd protoreflect.FieldDescriptor
	for i, name := range strings.Split(path, ".") {
		if i > 0 {
			if fd.Message() == nil || fd.IsList() || fd.IsMap() {
				return "not a parameter of this request"
			}
			md = fd.Message()
		}
		if fd = md.Fields().ByName(protoreflect.Name(name)); fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return "not a parameter of this request"
		}
	}
	if fd.Message() != nil && !fd.IsMap() && !isScalarMessage(fd.Message().FullName()) {
		return "not a value: name one of its fields (" + path + ".…)"
	}
	if n > 1 && !fd.IsList() && !fd.IsMap() {
		return "given more than once"
	}
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	return describeKind(fd)
}

// isScalarMessage reports whether grpc-gateway reads a message type from
// one query value (well-known types).
func isScalarMessage(name protoreflect.FullName) bool {
	return strings.HasPrefix(string(name), "google.protobuf.")
}

// describeKind says what a value of a field must be.
func describeKind(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "not true or false"
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		names := make([]string, values.Len())
		for i := range names {
			names[i] = string(values.Get(i).Name())
		}
		return "not one of " + strings.Join(names, ", ")
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "not a valid 32-bit integer"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "not a valid 64-bit integer"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "not a valid unsigned 32-bit integer"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "not a valid unsigned 64-bit integer"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "not a valid number"
	case protoreflect.BytesKind:
		return "not valid base64"
	case protoreflect.MessageKind:
		switch fd.Message().FullName() {
		case "google.protobuf.Duration":
			return "not a duration such as 1.5s, 300ms or 1h"
		case "google.protobuf.Timestamp":
			return "not an RFC 3339 time such as 2025-01-02T15:04:05Z"
		case "google.protobuf.Value", "google.protobuf.Struct":
			return "not valid JSON"
		}
		if v := fd.Message().Fields().ByName("value"); v != nil && strings.HasSuffix(string(fd.Message().FullName()), "Value") {
			return describeKind(v) // a wrapper type
		}
	}
	return "not a valid value"
}

// unknownQueryParameter refuses a query parameter that names no field of
// the route's request, as an unknown field of a body is refused: a
// misspelt parameter (max_in_fligth) must not be dropped in silence.
// Parameters the route takes from its path are left to grpc-gateway, which
// ignores them in the query. (grpc-gateway's own parser could be swapped
// for a strict one only through a process-wide variable.)
func unknownQueryParameter(rte *route, query url.Values) *status.Status {
	for _, key := range sortedKeys(query) {
		path := strings.Split(key, ".")
		if i := strings.IndexByte(key, '['); i >= 0 { // map[key]=value
			path = strings.Split(key[:i], ".")
		}
		if !rte.queryFilter.HasCommonPrefix(path) && !namesField(rte.request.Descriptor(), path) {
			return invalidParameter(key, "not a parameter of this request")
		}
	}
	return nil
}

// namesField reports whether path (proto or JSON names) leads to a field
// of md.
func namesField(md protoreflect.MessageDescriptor, path []string) bool {
	for i, name := range path {
		fd := md.Fields().ByTextName(name)
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		switch {
		case fd == nil:
			return false
		case i == len(path)-1 || fd.IsMap():
			return true
		case fd.Kind() != protoreflect.MessageKind:
			return false
		}
		md = fd.Message()
	}
	return false
}
