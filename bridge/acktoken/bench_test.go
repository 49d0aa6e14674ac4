package acktoken

import (
	"testing"
	"time"
)

func BenchmarkSign(b *testing.B) {
	s, _ := New(make([]byte, MinKeyLen))
	c := Claims{Reply: "$JS.ACK.ORDERS.worker.1.12345.12345.1700000000000000000.42", Identity: "orders-service", Expires: time.Now().Add(time.Minute), AckWait: 30 * time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s, _ := New(make([]byte, MinKeyLen))
	tok, _ := s.Sign(Claims{Reply: "$JS.ACK.ORDERS.worker.1.12345.12345.1700000000000000000.42", Identity: "orders-service", Expires: time.Now().Add(time.Hour), AckWait: 30 * time.Second})
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseReply is reading a delivery's ack subject, done up to three
// times per delivered message (converting it, signing, verifying).
func BenchmarkParseReply(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseReply("$JS.ACK.ORDERS.worker.1.12345.12345.1700000000000000000.42"); err != nil {
			b.Fatal(err)
		}
	}
}
