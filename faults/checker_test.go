package faults

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCheckerFindsViolations: the checker itself, on made-up histories: a
// checker that never fails proves nothing.
func TestCheckerFindsViolations(t *testing.T) {
	c := NewChecker()
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		c.Attempt(id)
	}
	c.Acked("a", 1)
	c.Acked("b", 2) // lost: not stored
	c.Unknown("c", "UNAVAILABLE")
	c.Failed("d", "INVALID_ARGUMENT") // refused, yet stored below: unexpected
	c.Acked("e", 4)
	c.Acked("f", 5)
	c.Delivered("a")
	c.AckedBack("a")
	c.Delivered("e")
	c.Delivered("e") // a duplicate delivery, never acked back
	c.Call("Publish x", 7*time.Second, 5*time.Second, time.Second)
	healed := c.FaultStart("test")
	healed()
	c.Attempt("g")
	c.Failed("g", "NOT_FOUND/NO_STREAM_FOR_SUBJECT") // permanent, just after a fault
	stored := []StoredMsg{{1, "a"}, {3, "c"}, {4, "d"}, {5, "e"}, {6, "e"}, {7, "zz"}, {8, "f"}}
	r := c.Check("self-test", stored, CheckOptions{MsgIDs: true, Consumer: true})
	want := Report{Messages: 7, Acked: 4, Failed: 2, Unknown: 1, Stored: 7, StoredFromUnknown: 1, FaultsInjected: 1,
		Lost: 1, Unexpected: 2, Duplicates: 1, Delivered: 2, DuplicateDeliveries: 1, AckedBack: 1, NeverDelivered: 4, LateCalls: 1,
		WorstRecoveryMs: -1}
	got := r
	got.Scenario, got.Calls, got.WorstOverDeadlineMs, got.LongestCallMs, got.ErrorCodes, got.Violations, got.PermanentErrorsDuringFault =
		"", 0, 0, 0, nil, nil, 0
	if !equalReports(got, want) {
		t.Errorf("report\n got %+v\nwant %+v", got, want)
	}
	if len(r.Violations) != 6 {
		t.Errorf("violations: %q, want lost, unexpected, duplicates, never delivered, late calls, permanent errors during a fault", r.Violations)
	}
	if r.PermanentErrorsDuringFault != 1 {
		t.Errorf("permanent errors during a fault: %d, want 1", r.PermanentErrorsDuringFault)
	}
	if !strings.Contains(strings.Join(r.Violations, "\n"), "b (acked seq 2)") {
		t.Errorf("the lost message is not named: %q", r.Violations)
	}
	var back map[string]any
	if line := r.Line(); !strings.HasPrefix(line, "FAULTS: ") || json.Unmarshal([]byte(strings.TrimPrefix(line, "FAULTS: ")), &back) != nil {
		t.Errorf("FAULTS line is not JSON: %s", line)
	}

	// A clean history passes.
	c = NewChecker()
	c.Attempt("a")
	c.Acked("a", 1)
	if r := c.Check("clean", []StoredMsg{{1, "a"}}, CheckOptions{MsgIDs: true}); len(r.Violations) != 0 || r.Lost != 0 {
		t.Errorf("clean history: %+v", r)
	}
}

func equalReports(a, b Report) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
