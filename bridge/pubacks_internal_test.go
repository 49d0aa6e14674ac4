package bridge

import "testing"

// TestQuickPubAck: the forms nats-server writes are read without
// encoding/json; anything else (escapes, errors, batches, counters,
// numbers near overflow, damage) is left to it.
func TestQuickPubAck(t *testing.T) {
	for _, c := range []struct {
		in     string
		ok     bool
		stream string
		seq    uint64
		dup    bool
	}{
		{in: `{"stream":"ORDERS","seq":1}`, ok: true, stream: "ORDERS", seq: 1},
		{in: `{"stream":"O","seq":18446744073709551}`, ok: true, stream: "O", seq: 18446744073709551},
		{in: `{"stream":"ORDERS","domain":"hub","seq":42}`, ok: true, stream: "ORDERS", seq: 42},
		{in: `{"stream":"ORDERS","seq":7,"duplicate": true}`, ok: true, stream: "ORDERS", seq: 7, dup: true},
		{in: `{"stream":"ORDERS","seq":7,"duplicate":true}`, ok: true, stream: "ORDERS", seq: 7, dup: true},
		{in: `{"stream":"Ünïcode","seq":3}`, ok: true, stream: "Ünïcode", seq: 3},
		{in: `{"stream":"A\"B","seq":1}`},
		{in: `{"stream":"A\u0042","seq":1}`},
		{in: `{"error":{"code":503,"err_code":10077,"description":"x"}}`},
		{in: `{"stream":"ORDERS","seq":5,"batch":"b1","count":2}`},
		{in: `{"stream":"ORDERS","seq":5,"val":"1"}`},
		{in: `{"stream":"ORDERS","seq":18446744073709551615}`},
		{in: `{"stream":"ORDERS","seq":}`},
		{in: `{"stream":"ORDERS","seq":12`},
		{in: `{"stream":"","seq":1}`},
		{in: `{"stream":"ORDERS"}`},
		{in: `{"stream":"ORDERS","domain":"hub`},
		{in: ``},
	} {
		stream, seq, dup, ok := quickPubAck([]byte(c.in))
		if ok != c.ok || string(stream) != c.stream || seq != c.seq || dup != c.dup {
			t.Errorf("quickPubAck(%s) = %q, %d, %v, %v; want %q, %d, %v, %v", c.in, stream, seq, dup, ok, c.stream, c.seq, c.dup, c.ok)
		}
	}
}

// TestPubAcksParse: what the fast path leaves to encoding/json still
// reads right, errors included.
func TestPubAcksParse(t *testing.T) {
	var a pubAcks
	r, err := a.parse([]byte(`{"stream":"A\"B","seq":9,"duplicate":true}`))
	if err != nil || r.GetStream() != `A"B` || r.GetSequence() != 9 || !r.GetDuplicate() {
		t.Errorf("escaped stream: %v, %v", r, err)
	}
	r, err = a.parse([]byte(`{"stream":"ORDERS","seq":18446744073709551615}`))
	if err != nil || r.GetSequence() != 18446744073709551615 {
		t.Errorf("max sequence: %v, %v", r, err)
	}
	if _, err := a.parse([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"}}`)); err == nil || translate(err, "x") == nil {
		t.Errorf("API error: %v", err)
	}
	if _, err := a.parse([]byte(`not json`)); err == nil {
		t.Error("garbage: no error")
	}
	if _, err := a.parse([]byte(`{"seq":1}`)); err == nil {
		t.Error("no stream: no error")
	}
}
