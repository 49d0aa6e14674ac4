package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"

	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// ErrInvalidFile is a bootstrap file that cannot be applied: not YAML or
// JSON, an unknown field, a bad value, a duplicate entry.
var ErrInvalidFile = errors.New("invalid bootstrap file")

// ClaimKey is the metadata key a create carries so that, of replicas
// creating the same entry at once, exactly one succeeds (see the package
// doc). A file may not set it.
const ClaimKey = "jetway.bootstrap.claim"

// File is a parsed, validated bootstrap file.
type File struct {
	// Streams and Consumers are the entries, in the file's order.
	Streams   []Stream
	Consumers []Consumer
}

// Stream is one stream entry.
type Stream struct {
	// Config is the entry as written.
	Config *jetwayv1.StreamConfig
	// set are the fields the entry sets.
	set fieldSet
	// js is Config converted, validated.
	js jetstream.StreamConfig
}

// Consumer is one consumer entry.
type Consumer struct {
	// Stream is the consumer's stream.
	Stream string
	// Config is the entry's configuration as written.
	Config *jetwayv1.ConsumerConfig
	set    fieldSet
	js     jetstream.ConsumerConfig
}

// fieldSet holds the proto names of the fields an entry sets.
type fieldSet map[protoreflect.Name]bool

// Load reads and parses a bootstrap file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap file %s: %w", path, err)
	}
	return f, nil
}

// Parse parses a bootstrap file (YAML or JSON) and validates every entry
// as the Admin API would. Errors wrap ErrInvalidFile and name the entry
// (streams[1], consumers[0].config) and the field.
func Parse(data []byte) (*File, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: not YAML or JSON: %v", ErrInvalidFile, err)
	}
	var raw struct {
		Streams   []json.RawMessage `json:"streams"`
		Consumers []json.RawMessage `json:"consumers"`
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: want a map with the lists streams and consumers: %v", ErrInvalidFile, err)
	}
	f := &File{}
	streams := map[string]string{}
	for i, r := range raw.Streams {
		where := fmt.Sprintf("streams[%d]", i)
		s, err := parseStream(where, r)
		if err != nil {
			return nil, err
		}
		if prev, ok := streams[s.js.Name]; ok {
			return nil, fmt.Errorf("%w: %s: stream %q is already declared by %s", ErrInvalidFile, where, s.js.Name, prev)
		}
		streams[s.js.Name] = where
		f.Streams = append(f.Streams, s)
	}
	consumers := map[[2]string]string{}
	for i, r := range raw.Consumers {
		where := fmt.Sprintf("consumers[%d]", i)
		c, err := parseConsumer(where, r)
		if err != nil {
			return nil, err
		}
		key := [2]string{c.Stream, c.js.Durable}
		if prev, ok := consumers[key]; ok {
			return nil, fmt.Errorf("%w: %s: consumer %q on stream %q is already declared by %s", ErrInvalidFile, where, c.js.Durable, c.Stream, prev)
		}
		consumers[key] = where
		f.Consumers = append(f.Consumers, c)
	}
	return f, nil
}

func parseStream(where string, r json.RawMessage) (Stream, error) {
	cfg := &jetwayv1.StreamConfig{}
	set, err := unmarshalEntry(where, r, cfg)
	if err != nil {
		return Stream{}, err
	}
	js, err := bridge.StreamConfigFrom(where, cfg)
	if err != nil {
		return Stream{}, entryErr(where, "stream", cfg.GetName(), err)
	}
	if _, ok := cfg.GetMetadata()[ClaimKey]; ok {
		return Stream{}, entryErr(where, "stream", cfg.GetName(), fmt.Errorf("%s.metadata: %q is the bootstrap's own key", where, ClaimKey))
	}
	return Stream{Config: cfg, set: set, js: js}, nil
}

func parseConsumer(where string, r json.RawMessage) (Consumer, error) {
	var entry struct {
		Stream string          `json:"stream"`
		Config json.RawMessage `json:"config"`
	}
	dec := json.NewDecoder(bytes.NewReader(r))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entry); err != nil {
		return Consumer{}, fmt.Errorf("%w: %s: want {stream: NAME, config: {…}}: %v", ErrInvalidFile, where, err)
	}
	if entry.Config == nil {
		return Consumer{}, fmt.Errorf("%w: %s.config: required", ErrInvalidFile, where)
	}
	cfg := &jetwayv1.ConsumerConfig{}
	set, err := unmarshalEntry(where+".config", entry.Config, cfg)
	if err != nil {
		return Consumer{}, err
	}
	// The same checks as CreateConsumer's: a valid stream name, then
	// the configuration.
	if err := bridge.ValidateName(where+".stream", entry.Stream); err != nil {
		return Consumer{}, entryErr(where, "consumer", cfg.GetName(), err)
	}
	js, err := bridge.ConsumerConfigFrom(where+".config", cfg)
	if err != nil {
		return Consumer{}, entryErr(where, "consumer", cfg.GetName(), err)
	}
	if b := js.BackOff; set["ack_wait"] && len(b) > 0 && js.AckWait != b[0] {
		return Consumer{}, entryErr(where, "consumer", cfg.GetName(), fmt.Errorf("%s.config.ack_wait: with a backoff JetStream uses its first step (%v) as the ack wait: leave ack_wait out, or make them equal", where, b[0]))
	}
	if _, ok := cfg.GetMetadata()[ClaimKey]; ok {
		return Consumer{}, entryErr(where, "consumer", cfg.GetName(), fmt.Errorf("%s.config.metadata: %q is the bootstrap's own key", where, ClaimKey))
	}
	return Consumer{Stream: entry.Stream, Config: cfg, set: set, js: js}, nil
}

// entryErr names the entry in a validation error (which names the
// field).
func entryErr(where, kind, name string, err error) error {
	if name == "" {
		return fmt.Errorf("%w: %s: %v", ErrInvalidFile, where, err)
	}
	return fmt.Errorf("%w: %s %q: %v", ErrInvalidFile, kind, name, err)
}

// unmarshalEntry reads one entry into m with protojson (unknown fields
// are errors) and returns the fields it sets: the keys written, by their
// proto name (protojson takes the proto and the JSON name alike).
func unmarshalEntry(where string, r json.RawMessage, m proto.Message) (fieldSet, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(r, &keys); err != nil || keys == nil {
		return nil, fmt.Errorf("%w: %s: want a map of fields", ErrInvalidFile, where)
	}
	fields := m.ProtoReflect().Descriptor().Fields()
	set := fieldSet{}
	for k := range keys {
		fd := fields.ByName(protoreflect.Name(k))
		if fd == nil {
			fd = fields.ByJSONName(k)
		}
		if fd == nil {
			return nil, fmt.Errorf("%w: %s: unknown field %q", ErrInvalidFile, where, k)
		}
		if set[fd.Name()] {
			return nil, fmt.Errorf("%w: %s: field %q given twice (as %s and %s)", ErrInvalidFile, where, k, fd.Name(), fd.JSONName())
		}
		set[fd.Name()] = true
	}
	if err := unmarshal(r, m); err != nil {
		// Which field: protojson does not always say (a bad duration),
		// and its positions are in the JSON made of the entry, not in
		// the file.
		for k, v := range keys {
			one, _ := json.Marshal(map[string]json.RawMessage{k: v})
			if ferr := unmarshal(one, m.ProtoReflect().New().Interface()); ferr != nil {
				return nil, fmt.Errorf("%w: %s.%s: %s", ErrInvalidFile, where, k, protojsonReason(ferr))
			}
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidFile, where, protojsonReason(err))
	}
	return set, nil
}

func unmarshal(b []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(b, m)
}

// protojsonReason is err without protojson's "proto: (line 1:23): ".
func protojsonReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); strings.HasPrefix(msg, "proto:") && i > 0 {
		msg = msg[i+3:]
	}
	return strings.TrimPrefix(msg, "proto: ")
}
