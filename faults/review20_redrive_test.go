package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRedriveBridgeKilled (review 20): a redrive with delete, SIGKILLed
// mid-way, loses nothing and, run again on a restarted bridge, publishes
// nothing twice: counted natively, the originals' stream ends with each
// dead letter once and the DLQ stream empty; the second redrive's
// duplicates are at most the one the kill left published and not yet
// deleted.
func TestRedriveBridgeKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	n := startNATS(t, "nats")
	b := startBridge(t, n.url)
	_, js := nativeJS(t, n.url)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}, AllowDirect: true, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	const total = 40
	for i := 1; i <= total; i++ {
		m := nats.NewMsg("dlq.orders")
		m.Header.Set("Jetway-Dead-Letter-Stream", "ORDERS")
		m.Header.Set("Jetway-Dead-Letter-Consumer", "work")
		m.Header.Set("Jetway-Dead-Letter-Sequence", strconv.Itoa(i))
		m.Header.Set("Jetway-Dead-Letter-Subject", "orders.new")
		m.Header.Set("Jetway-Dead-Letter-Reason", "terminated")
		m.Data = []byte("order " + strconv.Itoa(i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	count := func(stream string) uint64 {
		t.Helper()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	redrive := func(rate int, stopAfter int) (progress int, summary map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.httpAddr+"/v1/dead-letters/DLQ:redrive",
			strings.NewReader(fmt.Sprintf(`{"rate":%d,"delete":true}`, rate)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var line struct {
				Result struct {
					Progress map[string]any `json:"progress"`
					Summary  map[string]any `json:"summary"`
				} `json:"result"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("redrive line %q: %v", sc.Text(), err)
			}
			if line.Result.Progress != nil {
				progress++
				if progress == stopAfter {
					return progress, nil
				}
			}
			if line.Result.Summary != nil {
				summary = line.Result.Summary
			}
		}
		return progress, summary
	}

	// 10 a second; killed after its fifth event, between two publishes
	// or in one.
	if p, _ := redrive(10, 5); p != 5 {
		t.Fatalf("%d progress events before the kill", p)
	}
	b.Kill()
	published, left := count("ORDERS"), count("DLQ")
	t.Logf("killed: %d published, %d dead letters left", published, left)
	if published+left < total || published+left > total+1 {
		t.Fatalf("after the kill: %d published + %d left, want %d (one more at most: published, not yet deleted)", published, left, total)
	}

	b.restart(t)
	_, sum := redrive(10000, 0)
	if sum == nil {
		t.Fatal("the second redrive ended without a summary")
	}
	t.Logf("second redrive: %v", sum)
	if got, want := count("ORDERS"), uint64(total); got != want {
		t.Errorf("ORDERS holds %d after the second redrive, want %d: published twice", got, want)
	}
	if got := count("DLQ"); got != 0 {
		t.Errorf("DLQ holds %d after the second redrive, want 0", got)
	}
	dups, _ := strconv.Atoi(fmt.Sprint(sum["duplicates"]))
	redriven, _ := strconv.Atoi(fmt.Sprint(sum["redriven"]))
	if uint64(dups) != published+left-total || uint64(redriven+dups) != left {
		t.Errorf("second redrive: %d redriven, %d duplicates; want %d duplicates of %d", redriven, dups, published+left-total, left)
	}
}
