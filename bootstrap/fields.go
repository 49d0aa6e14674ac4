package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// field is how one API field maps onto nats.go's configuration: the
// fields of jetstream.StreamConfig or ConsumerConfig it sets, whether
// its zero means the server's default, and which changes JetStream
// refuses on update. TestFieldTablesCoverTheAPI fails when the API grows
// a field missing here, or names a nats.go field that does not exist.
type field struct {
	goNames []string
	// defaulted: 0 (or empty) is replaced by the server's default, so a
	// 0 in the file does not count as set for an entry that exists.
	defaulted bool
	// conflict says why JetStream refuses the change from have to want
	// ("" when it takes it).
	conflict func(have, want protoreflect.Value) string
}

// always refuses any change.
func always(why string) func(have, want protoreflect.Value) string {
	return func(have, want protoreflect.Value) string { return why }
}

// notOffAgain refuses turning a setting off once on.
func notOffAgain(why string) func(have, want protoreflect.Value) string {
	return func(have, want protoreflect.Value) string {
		if have.Bool() && !want.Bool() {
			return why
		}
		return ""
	}
}

var streamFields = map[protoreflect.Name]field{
	"name":        {goNames: []string{"Name"}},
	"description": {goNames: []string{"Description"}},
	"subjects":    {goNames: []string{"Subjects"}, defaulted: true},
	"retention": {goNames: []string{"Retention"}, conflict: func(have, want protoreflect.Value) string {
		wq := protoreflect.EnumNumber(jetwayv1.RetentionPolicy_RETENTION_POLICY_WORK_QUEUE)
		if have.Enum() == wq || want.Enum() == wq {
			return "JetStream cannot change the retention to or from work queue"
		}
		return ""
	}},
	"storage":                   {goNames: []string{"Storage"}, conflict: always("JetStream cannot change a stream's storage")},
	"replicas":                  {goNames: []string{"Replicas"}},
	"max_msgs":                  {goNames: []string{"MaxMsgs"}},
	"max_bytes":                 {goNames: []string{"MaxBytes"}},
	"max_age":                   {goNames: []string{"MaxAge"}},
	"max_msg_size":              {goNames: []string{"MaxMsgSize"}},
	"max_msgs_per_subject":      {goNames: []string{"MaxMsgsPerSubject"}},
	"max_consumers":             {goNames: []string{"MaxConsumers"}},
	"discard":                   {goNames: []string{"Discard"}},
	"discard_new_per_subject":   {goNames: []string{"DiscardNewPerSubject"}},
	"duplicate_window":          {goNames: []string{"Duplicates"}, defaulted: true},
	"deny_delete":               {goNames: []string{"DenyDelete"}, conflict: notOffAgain("JetStream cannot turn deny_delete off again")},
	"deny_purge":                {goNames: []string{"DenyPurge"}, conflict: notOffAgain("JetStream cannot turn deny_purge off again")},
	"allow_rollup":              {goNames: []string{"AllowRollup"}},
	"allow_direct":              {goNames: []string{"AllowDirect"}},
	"allow_msg_ttl":             {goNames: []string{"AllowMsgTTL"}, conflict: notOffAgain("JetStream cannot turn allow_msg_ttl off again")},
	"compression":               {goNames: []string{"Compression"}},
	"metadata":                  {goNames: []string{"Metadata"}},
	"subject_delete_marker_ttl": {goNames: []string{"SubjectDeleteMarkerTTL"}},
	"sealed":                    {goNames: []string{"Sealed"}, conflict: notOffAgain("JetStream cannot unseal a sealed stream")},
	// Streams (issue 18).
	"mirror": {goNames: []string{"Mirror"}, conflict: func(have, want protoreflect.Value) string {
		if want.Message().IsValid() && !proto.Equal(have.Message().Interface(), want.Message().Interface()) {
			return "JetStream cannot change a stream's mirror (only remove it)"
		}
		return ""
	}},
	"sources":             {goNames: []string{"Sources"}},
	"subject_transform":   {goNames: []string{"SubjectTransform"}},
	"republish":           {goNames: []string{"RePublish"}},
	"placement":           {goNames: []string{"Placement"}},
	"mirror_direct":       {goNames: []string{"MirrorDirect"}},
	"allow_atomic":        {goNames: []string{"AllowAtomicPublish"}},
	"allow_batched":       {goNames: []string{"AllowBatchPublish"}},
	"allow_msg_counter":   {goNames: []string{"AllowMsgCounter"}, conflict: always("JetStream cannot change allow_msg_counter")},
	"allow_msg_schedules": {goNames: []string{"AllowMsgSchedules"}, conflict: notOffAgain("JetStream cannot turn allow_msg_schedules off again")},
	"persist_mode":        {goNames: []string{"PersistMode"}, defaulted: true, conflict: always("JetStream cannot change a stream's persist_mode")},
	"first_sequence":      {goNames: []string{"FirstSeq"}, defaulted: true},
	"consumer_limits":     {goNames: []string{"ConsumerLimits"}},
	"no_ack":              {goNames: []string{"NoAck"}},
}

var consumerFields = map[protoreflect.Name]field{
	"name":               {goNames: []string{"Durable"}},
	"description":        {goNames: []string{"Description"}},
	"filter_subjects":    {goNames: []string{"FilterSubject", "FilterSubjects"}},
	"deliver_policy":     {goNames: []string{"DeliverPolicy"}, conflict: always("JetStream cannot change a consumer's deliver_policy")},
	"opt_start_sequence": {goNames: []string{"OptStartSeq"}, conflict: always("JetStream cannot change a consumer's opt_start_sequence")},
	"opt_start_time":     {goNames: []string{"OptStartTime"}, conflict: always("JetStream cannot change a consumer's opt_start_time")},
	"ack_policy":         {goNames: []string{"AckPolicy"}, conflict: always("JetStream cannot change a consumer's ack_policy")},
	"ack_wait":           {goNames: []string{"AckWait"}, defaulted: true},
	"max_deliver":        {goNames: []string{"MaxDeliver"}},
	"backoff":            {goNames: []string{"BackOff"}},
	"max_ack_pending":    {goNames: []string{"MaxAckPending"}, defaulted: true},
	"max_waiting":        {goNames: []string{"MaxWaiting"}, defaulted: true, conflict: always("JetStream cannot change a consumer's max_waiting")},
	"max_batch":          {goNames: []string{"MaxRequestBatch"}},
	"max_bytes":          {goNames: []string{"MaxRequestMaxBytes"}},
	"max_expires":        {goNames: []string{"MaxRequestExpires"}},
	"inactive_threshold": {goNames: []string{"InactiveThreshold"}},
	"headers_only":       {goNames: []string{"HeadersOnly"}},
	"replicas":           {goNames: []string{"Replicas"}},
	"memory_storage":     {goNames: []string{"MemoryStorage"}, conflict: always("JetStream cannot change a consumer's memory_storage")},
	"metadata":           {goNames: []string{"Metadata"}},
	"priority_groups":    {goNames: []string{"PriorityGroups"}},
	"priority_policy":    {goNames: []string{"PriorityPolicy"}},
	"priority_timeout":   {goNames: []string{"PinnedTTL"}},
	"pause_until":        {goNames: []string{"PauseUntil"}},
	// Dead letters (issue 19): kept as consumer metadata.
	"dead_letter_subject": {goNames: []string{"Metadata"}},
}

// Change is one field that differs: its API name and its values, as
// JSON in the REST API's shape.
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Conflict says why JetStream refuses the change on update ("" when
	// it takes it).
	Conflict string `json:"conflict,omitempty"`
}

// String is "field: from -> to".
func (c Change) String() string { return c.Field + ": " + c.From + " -> " + c.To }

// diff compares the fields of set in have and want (API messages of one
// type) and returns those that differ. Metadata keys JetStream owns
// ("_nats…") and the claim are not compared.
func diff(table map[protoreflect.Name]field, set fieldSet, have, want proto.Message) []Change {
	have, want = comparable(have), comparable(want)
	hr, wr := have.ProtoReflect(), want.ProtoReflect()
	fields := hr.Descriptor().Fields()
	var out []Change
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := table[fd.Name()]
		if !set[fd.Name()] || fd.Name() == "name" || (f.defaulted && !wr.Has(fd)) {
			continue
		}
		if proto.Equal(only(have, fd), only(want, fd)) {
			continue
		}
		c := Change{Field: string(fd.Name()), From: render(have, fd), To: render(want, fd)}
		if f.conflict != nil {
			c.Conflict = f.conflict(hr.Get(fd), wr.Get(fd))
		}
		out = append(out, c)
	}
	return out
}

// comparable is a copy of m without the metadata keys that are not the
// user's.
func comparable(m proto.Message) proto.Message {
	m = proto.Clone(m)
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("metadata")
	if fd == nil || !r.Has(fd) {
		return m
	}
	md := r.Mutable(fd).Map()
	md.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		if s := k.String(); strings.HasPrefix(s, "_nats") || s == ClaimKey {
			md.Clear(k)
		}
		return true
	})
	return m
}

// only is a message of m's type holding m's fd alone.
func only(m proto.Message, fd protoreflect.FieldDescriptor) proto.Message {
	r := m.ProtoReflect()
	out := r.New()
	if r.Has(fd) {
		out.Set(fd, r.Get(fd))
	}
	return out.Interface()
}

// render is fd's value in m as compact protojson ("86400s", "\"1000\"",
// null for an unset message).
func render(m proto.Message, fd protoreflect.FieldDescriptor) string {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(only(m, fd))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, all[string(fd.Name())]); err != nil {
		return string(all[string(fd.Name())])
	}
	return out.String()
}

// apply copies the nats.go fields of the changed API fields from want
// onto next (a nats.go configuration of the same type, a pointer).
func apply(table map[protoreflect.Name]field, changes []Change, next, want any) {
	dst, src := reflect.ValueOf(next).Elem(), reflect.ValueOf(want)
	for _, c := range changes {
		for _, n := range table[protoreflect.Name(c.Field)].goNames {
			dst.FieldByName(n).Set(src.FieldByName(n))
		}
	}
}

// ownMetadata is md without the claim and JetStream's own keys (which
// JetStream sets again on every update), a copy; nil stays nil.
func ownMetadata(md map[string]string) map[string]string {
	if md == nil {
		return nil
	}
	out := maps.Clone(md)
	for k := range out {
		if strings.HasPrefix(k, "_nats") || k == ClaimKey {
			delete(out, k)
		}
	}
	return out
}
