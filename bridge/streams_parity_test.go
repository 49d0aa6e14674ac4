package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// Streams parity (issue 18): the whole StreamConfig through the bridge,
// each result read natively with nats.go.

// TestStreamMirrorAndSourceCopy: a mirror and a source with a subject
// transform, created through the bridge, really copy the origin's
// messages (read natively), and StreamInfo shows their state.
func TestStreamMirrorAndSourceCopy(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "ORIGIN", Subjects: []string{"origin.>"}})
		for i := range 3 {
			adminPub(t, ctx, b, fmt.Sprintf("origin.eu.%d", i), []byte("m"), nil)
		}
		_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
			Name: "MIRROR", Mirror: &jetwayv1.StreamSource{Name: "ORIGIN"},
		}})
		adminOK(t, "CreateStream mirror", err)
		_, err = c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
			Name: "AGG", Subjects: []string{"agg.>"},
			Sources: []*jetwayv1.StreamSource{{
				Name:              "ORIGIN",
				SubjectTransforms: []*jetwayv1.SubjectTransform{{Source: "origin.eu.*", Destination: "agg.copied.{{wildcard(1)}}"}},
			}},
		}})
		adminOK(t, "CreateStream with a source", err)

		var info *jetwayv1.StreamInfo
		jetwaytest.Eventually(t, 10*time.Second, "the mirror and the source copy 3 messages", func() error {
			for _, name := range []string{"MIRROR", "AGG"} {
				got, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: name})
				if err != nil {
					return err
				}
				if n := got.GetStream().GetState().GetMessages(); n != 3 {
					return fmt.Errorf("%s holds %d messages", name, n)
				}
				if name == "MIRROR" {
					info = got.GetStream()
				}
			}
			return nil
		})
		m := info.GetMirror()
		if m.GetName() != "ORIGIN" || m.GetLag() != 0 || m.GetActive() == nil || m.GetError() != nil {
			t.Errorf("mirror state %v, want ORIGIN with lag 0, active, no error", m)
		}
		if info.GetConfig().GetMirror().GetName() != "ORIGIN" {
			t.Errorf("mirror config %v", info.GetConfig().GetMirror())
		}
		agg, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "AGG"})
		adminOK(t, "GetStream AGG", err)
		if s := agg.GetStream().GetSources(); len(s) != 1 || s[0].GetName() != "ORIGIN" || s[0].GetLag() != 0 ||
			len(s[0].GetSubjectTransforms()) != 1 || s[0].GetSubjectTransforms()[0].GetDestination() != "agg.copied.{{wildcard(1)}}" {
			t.Errorf("source state %v", s)
		}

		// Natively: the mirror has the origin's sequences, the source the
		// transformed subjects.
		mirror, err := b.JS.Stream(ctx, "MIRROR")
		adminOK(t, "native mirror", err)
		if msg, err := mirror.GetMsg(ctx, 2); err != nil || msg.Subject != "origin.eu.1" {
			t.Errorf("native mirror message 2: %v, %v", msg, err)
		}
		if cfg := mirror.CachedInfo().Config; cfg.Mirror == nil || cfg.Mirror.Name != "ORIGIN" {
			t.Errorf("native mirror config %+v", cfg.Mirror)
		}
		aggst, err := b.JS.Stream(ctx, "AGG")
		adminOK(t, "native AGG", err)
		if msg, err := aggst.GetLastMsgForSubject(ctx, "agg.copied.2"); err != nil || string(msg.Data) != "m" {
			t.Errorf("native AGG last on agg.copied.2: %v, %v", msg, err)
		}
		// The origin grows: the source catches up.
		adminPub(t, ctx, b, "origin.eu.9", []byte("later"), nil)
		jetwaytest.Eventually(t, 10*time.Second, "the source copies the new message", func() error {
			_, err := aggst.GetLastMsgForSubject(ctx, "agg.copied.9")
			return err
		})
	})
}

// TestStreamRepublish: a stream created with republish through the bridge
// republishes each stored message (subscribed natively).
func TestStreamRepublish(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		resp, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
			Name: "RP", Subjects: []string{"rp.>"},
			Republish: &jetwayv1.Republish{Source: "rp.>", Destination: "rpout.>"},
		}})
		adminOK(t, "CreateStream", err)
		if r := resp.GetStream().GetConfig().GetRepublish(); r.GetDestination() != "rpout.>" || r.GetSource() != "rp.>" {
			t.Errorf("republish read back %v", r)
		}
		sub, err := b.JS.Conn().SubscribeSync("rpout.>")
		adminOK(t, "native subscribe", err)
		defer func() { _ = sub.Unsubscribe() }()
		adminOK(t, "flush", b.JS.Conn().Flush())
		adminPub(t, ctx, b, "rp.a", []byte("hello"), nil)
		msg, err := sub.NextMsgWithContext(ctx)
		adminOK(t, "republished message", err)
		if msg.Subject != "rpout.a" || string(msg.Data) != "hello" || msg.Header.Get(jetstream.StreamHeader) != "RP" {
			t.Errorf("republished %s %q %v", msg.Subject, msg.Data, msg.Header)
		}
	})
}

// TestStreamPurgeCount: PurgeStream answers with the number it removed,
// with a subject filter and keep, and the stream agrees natively.
func TestStreamPurgeCount(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		st := adminStream(t, ctx, b, jetstream.StreamConfig{Name: "PC", Subjects: []string{"pc.>"}})
		for i := range 6 {
			subj := "pc.a"
			if i%2 == 1 {
				subj = "pc.b"
			}
			adminPub(t, ctx, b, subj, []byte("x"), nil)
		}
		resp, err := c.PurgeStream(ctx, &jetwayv1.PurgeStreamRequest{Name: "PC", Subject: "pc.a", Keep: 1})
		adminOK(t, "PurgeStream pc.a keep 1", err)
		if resp.GetPurged() != 2 {
			t.Errorf("purged %d, want 2", resp.GetPurged())
		}
		resp, err = c.PurgeStream(ctx, &jetwayv1.PurgeStreamRequest{Name: "PC"})
		adminOK(t, "PurgeStream all", err)
		if resp.GetPurged() != 4 {
			t.Errorf("purged %d, want 4", resp.GetPurged())
		}
		info, err := st.Info(ctx)
		adminOK(t, "native info", err)
		if info.State.Msgs != 0 {
			t.Errorf("native: %d messages left", info.State.Msgs)
		}
		resp, err = c.PurgeStream(ctx, &jetwayv1.PurgeStreamRequest{Name: "PC"})
		adminOK(t, "PurgeStream empty", err)
		if resp.GetPurged() != 0 {
			t.Errorf("purged %d of an empty stream", resp.GetPurged())
		}
		_, err = c.PurgeStream(ctx, &jetwayv1.PurgeStreamRequest{Name: "NOPE"})
		adminWantErr(t, err, codes.NotFound, "STREAM_NOT_FOUND", "")
	})
}

// TestStoredMessageFormats: GetMessage and GetLastMessage return the
// payload in the format asked, falling back to bytes as Subscribe does.
func TestStoredMessageFormats(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "FMT", Subjects: []string{"fmt.>"}})
		jsonSeq := adminPub(t, ctx, b, "fmt.json", []byte(`{"id":7,"tags":["a"]}`), nil)
		textSeq := adminPub(t, ctx, b, "fmt.text", []byte("héllo"), nil)
		binSeq := adminPub(t, ctx, b, "fmt.bin", []byte{0xff, 0x00, 0xfe}, nil)
		get := func(seq uint64, f jetwayv1.PayloadFormat) *jetwayv1.StoredMessage {
			t.Helper()
			resp, err := c.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "FMT", Sequence: seq, Format: f})
			adminOK(t, fmt.Sprintf("GetMessage %d %v", seq, f), err)
			return resp.GetMessage()
		}
		J, T, B := jetwayv1.PayloadFormat_PAYLOAD_FORMAT_JSON, jetwayv1.PayloadFormat_PAYLOAD_FORMAT_TEXT, jetwayv1.PayloadFormat_PAYLOAD_FORMAT_BYTES
		if m := get(jsonSeq, J); m.GetJson().GetStructValue().GetFields()["id"].GetNumberValue() != 7 || len(m.GetData()) != 0 {
			t.Errorf("JSON as json: %v", m)
		}
		if m := get(jsonSeq, 0); string(m.GetData()) != `{"id":7,"tags":["a"]}` || m.GetJson() != nil {
			t.Errorf("JSON by default: %v", m)
		}
		if m := get(textSeq, J); string(m.GetData()) != "héllo" || m.GetJson() != nil {
			t.Errorf("text as json falls back to bytes: %v", m)
		}
		if m := get(textSeq, T); m.GetText() != "héllo" || len(m.GetData()) != 0 {
			t.Errorf("text as text: %v", m)
		}
		if m := get(binSeq, T); !reflect.DeepEqual(m.GetData(), []byte{0xff, 0x00, 0xfe}) || m.GetText() != "" {
			t.Errorf("binary as text falls back to bytes: %v", m)
		}
		if m := get(binSeq, B); !reflect.DeepEqual(m.GetData(), []byte{0xff, 0x00, 0xfe}) {
			t.Errorf("binary as bytes: %v", m)
		}
		last, err := c.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "FMT", Subject: "fmt.json", Format: J})
		adminOK(t, "GetLastMessage json", err)
		if last.GetMessage().GetJson().GetStructValue().GetFields()["tags"].GetListValue().GetValues()[0].GetStringValue() != "a" {
			t.Errorf("GetLastMessage json: %v", last.GetMessage())
		}
		// Natively the same payload.
		st, err := b.JS.Stream(ctx, "FMT")
		adminOK(t, "native stream", err)
		if m, err := st.GetMsg(ctx, textSeq); err != nil || string(m.Data) != "héllo" {
			t.Errorf("native message %d: %v, %v", textSeq, m, err)
		}
	})
}

// richNative is a stream configuration with every setting nats.go has that
// one server can hold (placement needs a cluster; a mirror excludes
// subjects and sources; counters exclude TTLs and rollups).
func richNative(name string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                   name,
		Description:            "set natively",
		Subjects:               []string{"rich.>"},
		Retention:              jetstream.LimitsPolicy,
		MaxConsumers:           9,
		MaxMsgs:                1000,
		MaxBytes:               1 << 20,
		Discard:                jetstream.DiscardOld, // schedules refuse discard new
		DiscardNewPerSubject:   false,                // needs discard new
		MaxAge:                 time.Hour,
		MaxMsgsPerSubject:      50,
		MaxMsgSize:             8192,
		Storage:                jetstream.FileStorage,
		Replicas:               1,
		NoAck:                  true,
		Duplicates:             time.Minute,
		Sources:                []*jetstream.StreamSource{{Name: "ORIGIN", SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "origin.eu.>", Destination: "rich.eu.>"}}}},
		DenyDelete:             true,
		DenyPurge:              false, // roll-ups need the purge permission
		AllowRollup:            true,
		Compression:            jetstream.S2Compression,
		FirstSeq:               10,
		SubjectTransform:       &jetstream.SubjectTransformConfig{Source: "rich.in.>", Destination: "rich.stored.>"},
		RePublish:              &jetstream.RePublish{Source: "rich.>", Destination: "richcopy.>", HeadersOnly: true},
		AllowDirect:            true,
		ConsumerLimits:         jetstream.StreamConsumerLimits{InactiveThreshold: time.Hour, MaxAckPending: 500},
		Metadata:               map[string]string{"team": "rich"},
		AllowMsgTTL:            true,
		SubjectDeleteMarkerTTL: time.Minute,
		AllowAtomicPublish:     true,
		AllowMsgSchedules:      false,                        // sources refuse schedules (TestUpdateStreamKeepsCreationSettings)
		PersistMode:            jetstream.DefaultPersistMode, // async refuses atomic batches (TestUpdateStreamKeepsPersistMode)
		AllowBatchPublish:      true,
	}
}

// sameExcept compares two native configurations but for the metadata
// JetStream owns and the fields edit changed (on want).
func sameExcept(t *testing.T, what string, got, want jetstream.StreamConfig, edit func(*jetstream.StreamConfig)) {
	t.Helper()
	edit(&want)
	user := func(m map[string]string) map[string]string {
		out := maps.Clone(m)
		maps.DeleteFunc(out, func(k, _ string) bool { return strings.HasPrefix(k, "_nats") })
		return out
	}
	got.Metadata, want.Metadata = user(got.Metadata), user(want.Metadata)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: the native configuration changed beyond the edit:\ngot  %+v\nwant %+v", what, got, want)
	}
}

// TestUpdateStreamLosesNothing: a stream created natively with every
// setting nats.go has keeps all of them through UpdateStream — a full
// update of the configuration GetStream read, a masked update (gRPC, and
// REST PUT with update_mask), and a REST PATCH — with only the edited
// field changed when read natively.
func TestUpdateStreamLosesNothing(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "ORIGIN", Subjects: []string{"origin.>"}})
		created := adminStream(t, ctx, b, richNative("RICH")).CachedInfo().Config
		native := func() jetstream.StreamConfig {
			t.Helper()
			st, err := b.JS.Stream(ctx, "RICH")
			adminOK(t, "native stream", err)
			return st.CachedInfo().Config
		}

		// A full update of what GetStream reads.
		got, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "RICH"})
		adminOK(t, "GetStream", err)
		cfg := got.GetStream().GetConfig()
		if cfg.GetPersistMode() != jetwayv1.PersistMode_PERSIST_MODE_DEFAULT || !cfg.GetAllowAtomic() || !cfg.GetNoAck() ||
			cfg.GetFirstSequence() != 10 || cfg.GetRepublish().GetDestination() != "richcopy.>" || len(cfg.GetSources()) != 1 ||
			cfg.GetSubjectTransform().GetDestination() != "rich.stored.>" || cfg.GetConsumerLimits().GetMaxAckPending() != 500 ||
			!cfg.GetAllowBatched() {
			t.Errorf("GetStream does not show every setting: %v", cfg)
		}
		cfg.Description = "full update"
		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: cfg})
		adminOK(t, "full UpdateStream", err)
		sameExcept(t, "full update", native(), created, func(c *jetstream.StreamConfig) { c.Description = "full update" })

		// A masked update: only max_msgs, from a request that carries
		// nothing else.
		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{
			Config:     &jetwayv1.StreamConfig{Name: "RICH", MaxMsgs: 2000, Description: "not in the mask"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_msgs", "consumer_limits.max_ack_pending"}},
		})
		adminOK(t, "masked UpdateStream", err)
		sameExcept(t, "masked update", native(), created, func(c *jetstream.StreamConfig) {
			c.Description = "full update"
			c.MaxMsgs = 2000
			c.ConsumerLimits.MaxAckPending = 0 // cleared: in the mask, unset in the request
		})

		if tr.name != "rest" {
			return
		}
		// PATCH: the mask is the body's fields.
		r := b.Do(t, http.MethodPatch, "/v1/streams/RICH", `{"description":"patched","consumer_limits":{"max_ack_pending":7}}`)
		if r.Status != http.StatusOK {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		var resp jetwayv1.UpdateStreamResponse
		adminOK(t, "decode PATCH answer", protojson.Unmarshal(r.Body, &resp))
		if resp.GetStream().GetConfig().GetDescription() != "patched" {
			t.Errorf("PATCH answered %v", resp.GetStream().GetConfig())
		}
		sameExcept(t, "PATCH", native(), created, func(c *jetstream.StreamConfig) {
			c.Description = "patched"
			c.MaxMsgs = 2000
			c.ConsumerLimits.MaxAckPending = 7
		})
	})
}

// TestUpdateStreamMaskErrors: mask paths that name no field are refused
// (400, INVALID_ARGUMENT, naming the path), before anything changes; a
// masked field is validated as in a full update.
func TestUpdateStreamMaskErrors(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "M", Subjects: []string{"m.>"}})
		for _, p := range []string{"nope", "consumer_limits.nope", "sources.name", "metadata.team", "max_age.seconds.x"} {
			_, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{
				Config: &jetwayv1.StreamConfig{Name: "M"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_msgs", p}},
			})
			adminWantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "update_mask.paths[1]")
		}
		_, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{
			Config:     &jetwayv1.StreamConfig{Name: "M", Republish: &jetwayv1.Republish{Destination: "$JS.API.STREAM.DELETE.M"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"republish"}},
		})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_SUBJECT", "config.republish.destination")
		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{
			Config: &jetwayv1.StreamConfig{Name: "GONE"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_msgs"}},
		})
		adminWantErr(t, err, codes.NotFound, "STREAM_NOT_FOUND", "")
		st, err := b.JS.Stream(ctx, "M")
		adminOK(t, "native stream", err)
		if cfg := st.CachedInfo().Config; cfg.RePublish != nil || cfg.MaxMsgs != -1 {
			t.Errorf("a refused update changed the stream: %+v", cfg)
		}
		if tr.name == "rest" {
			r := b.Do(t, http.MethodPatch, "/v1/streams/M", `{"no_such_field":1}`)
			if r.Status != http.StatusBadRequest {
				t.Errorf("PATCH with an unknown field: %d %s", r.Status, r.Body)
			}
		}
	})
}

// TestStreamConfigInvalid: the new settings are validated with the field
// named.
func TestStreamConfigInvalid(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		for _, tc := range []struct {
			cfg           *jetwayv1.StreamConfig
			reason, field string
		}{
			{&jetwayv1.StreamConfig{Name: "X", Mirror: &jetwayv1.StreamSource{}}, "INVALID_NAME", "config.mirror.name"},
			{&jetwayv1.StreamConfig{Name: "X", Sources: []*jetwayv1.StreamSource{{Name: "A", FilterSubject: "a.>", SubjectTransforms: []*jetwayv1.SubjectTransform{{Source: "a.>"}}}}}, "INVALID_CONFIG", "config.sources[0].filter_subject"},
			{&jetwayv1.StreamConfig{Name: "X", Sources: []*jetwayv1.StreamSource{{Name: "A", Domain: "hub", External: &jetwayv1.ExternalStream{ApiPrefix: "$JS.hub.API"}}}}, "INVALID_CONFIG", "config.sources[0].domain"},
			{&jetwayv1.StreamConfig{Name: "X", SubjectTransform: &jetwayv1.SubjectTransform{Source: "x.>"}}, "INVALID_SUBJECT", "config.subject_transform.destination"},
			{&jetwayv1.StreamConfig{Name: "X", Republish: &jetwayv1.Republish{Destination: "_INBOX.>"}}, "INVALID_SUBJECT", "config.republish.destination"},
			{&jetwayv1.StreamConfig{Name: "X", Republish: &jetwayv1.Republish{Destination: "{{wildcard(1)}}.x"}}, "INVALID_SUBJECT", "config.republish.destination"},
			{&jetwayv1.StreamConfig{Name: "X", PersistMode: 9}, "INVALID_CONFIG", "config.persist_mode"},
			{&jetwayv1.StreamConfig{Name: "X", ConsumerLimits: &jetwayv1.StreamConsumerLimits{MaxAckPending: -1}}, "INVALID_CONFIG", "config.consumer_limits.max_ack_pending"},
		} {
			_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: tc.cfg})
			adminWantErr(t, err, codes.InvalidArgument, tc.reason, tc.field)
		}
		if _, err := b.JS.Stream(ctx, "X"); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("a refused stream exists natively: %v", err)
		}
	})
}

// TestUpdateStreamKeepsCreationSettings: the settings JetStream takes
// only at creation (persist_mode, first_sequence, allow_msg_counter) and
// allow_msg_schedules survive a read-modify-write, a masked update and a
// bare full update that leaves persist_mode and first_sequence unset.
func TestUpdateStreamKeepsCreationSettings(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		created := adminStream(t, ctx, b, jetstream.StreamConfig{
			Name: "SECOND", Subjects: []string{"second.>"}, PersistMode: jetstream.AsyncPersistMode,
			AllowMsgSchedules: true, FirstSeq: 5, Metadata: map[string]string{"k": "v"},
		}).CachedInfo().Config
		counters := adminStream(t, ctx, b, jetstream.StreamConfig{Name: "COUNTERS", Subjects: []string{"cnt.>"}, AllowMsgCounter: true}).CachedInfo().Config
		native := func(name string) jetstream.StreamConfig {
			t.Helper()
			st, err := b.JS.Stream(ctx, name)
			adminOK(t, "native stream", err)
			return st.CachedInfo().Config
		}
		got, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "SECOND"})
		adminOK(t, "GetStream", err)
		cfg := got.GetStream().GetConfig()
		if cfg.GetPersistMode() != jetwayv1.PersistMode_PERSIST_MODE_ASYNC || cfg.GetFirstSequence() != 5 || !cfg.GetAllowMsgSchedules() {
			t.Errorf("GetStream: %v", cfg)
		}
		cfg.Description = "rmw"
		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: cfg})
		adminOK(t, "read-modify-write", err)
		sameExcept(t, "read-modify-write", native("SECOND"), created, func(c *jetstream.StreamConfig) { c.Description = "rmw" })

		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{
			Config:     &jetwayv1.StreamConfig{Name: "SECOND", MaxAge: adminDur(time.Hour)},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_age"}},
		})
		adminOK(t, "masked", err)
		sameExcept(t, "masked", native("SECOND"), created, func(c *jetstream.StreamConfig) { c.Description = "rmw"; c.MaxAge = time.Hour })

		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{
			Name: "SECOND", Subjects: []string{"second.>"}, AllowMsgSchedules: true, Metadata: map[string]string{"k": "v"},
		}})
		adminOK(t, "bare full update", err)
		sameExcept(t, "bare full update", native("SECOND"), created, func(*jetstream.StreamConfig) {})

		cg, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "COUNTERS"})
		adminOK(t, "GetStream COUNTERS", err)
		if !cg.GetStream().GetConfig().GetAllowMsgCounter() {
			t.Errorf("allow_msg_counter not read: %v", cg.GetStream().GetConfig())
		}
		cc := cg.GetStream().GetConfig()
		cc.Description = "counted"
		_, err = c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: cc})
		adminOK(t, "update COUNTERS", err)
		sameExcept(t, "counters", native("COUNTERS"), counters, func(c *jetstream.StreamConfig) { c.Description = "counted" })
	})
}
