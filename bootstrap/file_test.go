package bootstrap

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/reflect/protoreflect"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestExampleFileParses: deploy/examples/bootstrap.yaml, which the README
// shows, is a valid file, and says what it seems to.
func TestExampleFileParses(t *testing.T) {
	f, err := Load("../deploy/examples/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Streams) != 2 || len(f.Consumers) != 2 {
		t.Fatalf("%d streams, %d consumers; want 2 and 2", len(f.Streams), len(f.Consumers))
	}
	orders := f.Streams[0]
	if orders.js.Name != "ORDERS" || orders.js.MaxAge != 7*24*time.Hour || orders.js.MaxBytes != 1<<30 || orders.js.Metadata["owner"] != "orders-team" {
		t.Errorf("ORDERS = %+v", orders.js)
	}
	if !orders.set["max_age"] || orders.set["retention"] {
		t.Errorf("ORDERS sets %v", orders.set)
	}
	billing := f.Consumers[0]
	if billing.Stream != "ORDERS" || billing.js.Durable != "billing" || billing.js.MaxDeliver != 5 || len(billing.js.BackOff) != 3 || billing.set["ack_wait"] || len(billing.js.FilterSubjects) != 2 {
		t.Errorf("billing = %+v", billing.js)
	}
}

// TestParseNamesTheEntryAndField: every refusal wraps ErrInvalidFile and
// says where.
func TestParseNamesTheEntryAndField(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"not yaml", "streams: [", []string{"not YAML or JSON"}},
		{"unknown top-level key", "stream: []", []string{`unknown field "stream"`}},
		{"unknown stream field", "streams: [{name: A, max_agee: 1s}]", []string{"streams[0]", `unknown field "max_agee"`}},
		{"bad value", "streams: [{name: A, max_age: 1h}]", []string{"streams[0]", "max_age"}},
		{"invalid name", "streams: [{name: A.B}]", []string{"streams[0].name", "invalid name"}},
		{"negative limit", "streams: [{name: A}, {name: B, max_msgs: -1}]", []string{`stream "B"`, "streams[1].max_msgs", "must not be negative"}},
		{"reserved subject", "streams: [{name: A, subjects: ['$JS.API.>']}]", []string{"streams[0].subjects", "reserved"}},
		{"duplicate stream", "streams: [{name: A}, {name: A}]", []string{"streams[1]", "already declared by streams[0]"}},
		{"field twice", `{"streams": [{"name": "A", "max_age": "1s", "maxAge": "2s"}]}`, []string{"given twice"}},
		{"consumer without config", "consumers: [{stream: A}]", []string{"consumers[0].config: required"}},
		{"consumer unknown key", "consumers: [{stream: A, name: x, config: {name: x}}]", []string{"consumers[0]", `unknown field "name"`}},
		{"consumer bad stream", "consumers: [{stream: 'a b', config: {name: x}}]", []string{"consumers[0].stream", "invalid name"}},
		{"consumer bad field", "consumers: [{stream: A, config: {name: x, deliver_policy: DELIVER_POLICY_BY_START_SEQUENCE}}]", []string{`consumer "x"`, "consumers[0].config.opt_start_sequence"}},
		{"ack_wait against backoff", "consumers: [{stream: A, config: {name: x, ack_wait: 30s, backoff: [1s]}}]", []string{"consumers[0].config.ack_wait", "first step"}},
		{"consumer duplicate", "consumers: [{stream: A, config: {name: x}}, {stream: A, config: {name: x}}]", []string{"consumers[1]", "already declared by consumers[0]"}},
		{"claim key", "streams: [{name: A, metadata: {jetway.bootstrap.claim: x}}]", []string{"streams[0].metadata", "bootstrap's own key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("Parse = %v, want ErrInvalidFile", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestParseAcceptsJSONNamesAndEmpty: lowerCamel names as protojson takes
// them count as set; an empty file is nothing to do.
func TestParseAcceptsJSONNamesAndEmpty(t *testing.T) {
	f, err := Parse([]byte(`{"streams":[{"name":"A","maxAge":"60s","denyDelete":false}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := f.Streams[0]; !s.set["max_age"] || !s.set["deny_delete"] || s.js.MaxAge != time.Minute {
		t.Errorf("set %v, config %+v", s.set, s.js)
	}
	if f, err := Parse(nil); err != nil || len(f.Streams)+len(f.Consumers) != 0 {
		t.Errorf("empty file: %+v, %v", f, err)
	}
}

// TestFieldTablesCoverTheAPI: every field of StreamConfig and
// ConsumerConfig is in its table, and every nats.go field a table names
// exists (so a field added to the API, or renamed in nats.go, fails
// here rather than being silently ignored).
func TestFieldTablesCoverTheAPI(t *testing.T) {
	for _, tc := range []struct {
		msg   protoreflect.Message
		table map[protoreflect.Name]field
		goCfg reflect.Type
	}{
		{(&jetwayv1.StreamConfig{}).ProtoReflect(), streamFields, reflect.TypeFor[jetstream.StreamConfig]()},
		{(&jetwayv1.ConsumerConfig{}).ProtoReflect(), consumerFields, reflect.TypeFor[jetstream.ConsumerConfig]()},
	} {
		fields := tc.msg.Descriptor().Fields()
		for i := range fields.Len() {
			if _, ok := tc.table[fields.Get(i).Name()]; !ok {
				t.Errorf("%s.%s is not in the table", tc.msg.Descriptor().Name(), fields.Get(i).Name())
			}
		}
		for name, f := range tc.table {
			if fields.ByName(name) == nil {
				t.Errorf("%s has no field %s", tc.msg.Descriptor().Name(), name)
			}
			for _, g := range f.goNames {
				if _, ok := tc.goCfg.FieldByName(g); !ok {
					t.Errorf("%s has no field %s (for %s)", tc.goCfg, g, name)
				}
			}
		}
	}
}

func ExampleParse() {
	_, err := Parse([]byte(`
streams:
  - name: ORDERS
    subjects: ["orders.>"]
    max_age: 7d
`))
	fmt.Println(err)
	// Output: invalid bootstrap file: streams[0].max_age: invalid google.protobuf.Duration value "7d"
}
