package bridge

import (
	"reflect"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// modeledStreamFields are the jetstream.StreamConfig fields the API's
// StreamConfig carries (streamConfigFrom sets them from the request).
var modeledStreamFields = map[string]bool{
	"Name": true, "Description": true, "Subjects": true, "Retention": true, "MaxConsumers": true,
	"MaxMsgs": true, "MaxBytes": true, "Discard": true, "DiscardNewPerSubject": true, "MaxAge": true,
	"MaxMsgsPerSubject": true, "MaxMsgSize": true, "Storage": true, "Replicas": true, "Duplicates": true,
	"Sealed": true, "DenyDelete": true, "DenyPurge": true, "AllowRollup": true, "Compression": true,
	"AllowDirect": true, "Metadata": true, "AllowMsgTTL": true, "SubjectDeleteMarkerTTL": true,
	// Streams (issue 18).
	"NoAck": true, "Placement": true, "Mirror": true, "Sources": true, "FirstSeq": true,
	"SubjectTransform": true, "RePublish": true, "MirrorDirect": true, "ConsumerLimits": true,
	"AllowMsgCounter": true, "AllowAtomicPublish": true, "AllowMsgSchedules": true, "PersistMode": true,
	"AllowBatchPublish": true,
}

// TestKeepUnmodeledCoversStreamConfig: every field of nats.go's
// StreamConfig is either modeled by the API or kept from the current
// configuration by an update, so an update never drops a setting. A field
// nats.go adds fails here until it is put on one side.
func TestKeepUnmodeledCoversStreamConfig(t *testing.T) {
	var cur jetstream.StreamConfig
	cv := reflect.ValueOf(&cur).Elem()
	for i := range cv.NumField() {
		setNonZero(t, cv.Type().Field(i).Name, cv.Field(i))
	}
	var cfg jetstream.StreamConfig
	keepUnmodeled(&cfg, cur)
	got := reflect.ValueOf(cfg)
	for i := range got.NumField() {
		name := got.Type().Field(i).Name
		kept := !got.Field(i).IsZero()
		switch {
		case modeledStreamFields[name] && kept:
			t.Errorf("%s is modeled by the API but keepUnmodeled copies it over the request's value", name)
		case !modeledStreamFields[name] && !kept:
			t.Errorf("%s is neither modeled by the API nor kept by keepUnmodeled: an update through the bridge would drop it", name)
		}
	}
}

// setNonZero gives v (a field named name) some non-zero value.
func setNonZero(t *testing.T, name string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.String:
		v.SetString("x")
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem())
		v.Set(m)
	case reflect.Struct:
		setNonZero(t, name+"."+v.Type().Field(0).Name, v.Field(0))
	default:
		t.Fatalf("%s: no non-zero value for kind %v", name, v.Kind())
	}
}

// modeledConsumerFields are the jetstream.ConsumerConfig fields the API's
// ConsumerConfig carries (consumerConfigFrom sets them from the request).
var modeledConsumerFields = map[string]bool{
	"Durable": true, "Description": true, "DeliverPolicy": true, "OptStartSeq": true, "OptStartTime": true,
	"AckPolicy": true, "AckWait": true, "MaxDeliver": true, "BackOff": true, "FilterSubject": true,
	"FilterSubjects": true, "MaxWaiting": true, "MaxAckPending": true, "HeadersOnly": true,
	"MaxRequestBatch": true, "MaxRequestExpires": true, "MaxRequestMaxBytes": true, "InactiveThreshold": true,
	"Replicas": true, "MemoryStorage": true, "Metadata": true,
	// Consume (issue 18).
	"PauseUntil": true, "PriorityPolicy": true, "PinnedTTL": true, "PriorityGroups": true,
}

// TestKeepUnmodeledCoversConsumerConfig: every field of nats.go's
// ConsumerConfig is modeled by the API or kept by an update.
func TestKeepUnmodeledCoversConsumerConfig(t *testing.T) {
	var cur jetstream.ConsumerConfig
	cv := reflect.ValueOf(&cur).Elem()
	for i := range cv.NumField() {
		setNonZero(t, cv.Type().Field(i).Name, cv.Field(i))
	}
	var cfg jetstream.ConsumerConfig
	keepUnmodeledConsumer(&cfg, cur)
	got := reflect.ValueOf(cfg)
	for i := range got.NumField() {
		name := got.Type().Field(i).Name
		kept := !got.Field(i).IsZero()
		switch {
		case modeledConsumerFields[name] && kept:
			t.Errorf("%s is modeled by the API but keepUnmodeledConsumer copies it over the request's value", name)
		case !modeledConsumerFields[name] && !kept:
			t.Errorf("%s is neither modeled by the API nor kept by keepUnmodeledConsumer: an update through the bridge would drop it", name)
		}
	}
}
