package auth

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestReviewTokenCacheMemory: one identity may mint tokens of 16 stream
// and 16 subject patterns of 256 bytes each (about 10.7 KiB), and the
// token cache keeps each verified one (its text as the key, its compiled
// identity as the value) until 10,000 are held. It measures the heap the
// full cache holds; the review's bound is 64 MiB.
func TestReviewTokenCacheMemory(t *testing.T) {
	c := accessTConfig(t, "orders")
	now := time.Unix(1_800_000_000, 0)
	id, err := c.Authenticate("ApiKey orders-key-0123456789abcdef", "", now)
	if err != nil {
		t.Fatal(err)
	}
	var streams, subjects []string
	for i := range maxScopePatterns {
		streams = append(streams, fmt.Sprintf("S%02d", i)+strings.Repeat("Z", maxScopePattern-3))
		s := fmt.Sprintf("s%02d.", i) + strings.Repeat("x.", (maxScopePattern-6)/2) + "y"
		subjects = append(subjects, s[:min(len(s), maxScopePattern)])
	}
	sc := Scope{Operations: []Operation{OpPublish, OpConsume, OpAck}, Streams: streams, Subjects: subjects}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := tokenCacheSize - 1
	for range n {
		m, err := c.MintAccessToken(id, sc, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Authenticate("Bearer "+m.Token, "", now); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("cache holds %d entries", len(c.tokens.m))
	runtime.KeepAlive(c)
	t.Logf("%d cached tokens hold %d MiB (%d KiB each)", n, held>>20, held/int64(n)>>10)
	if held > 64<<20 {
		t.Errorf("the token cache holds %d MiB for %d tokens one identity minted in seconds", held>>20, n)
	}
}
