package refusal

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

// refusedErr is the error nats.go hands the error handler for nats-server's
// -ERR 'Permissions Violation for Publish to "<subject>"'.
func refusedErr(subject string) error {
	return fmt.Errorf("%w: Permissions Violation for Publish to %q", nats.ErrPermissionViolation, subject)
}

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err     error
		subject string
		ok      bool
	}{
		{refusedErr("orders.secret"), "orders.secret", true},
		{fmt.Errorf("%w: Permissions Violation for Subscription to %q", nats.ErrPermissionViolation, "orders.>"), "", false},
		{fmt.Errorf("%w: Permissions Violation for Publish with Reply of %q", nats.ErrPermissionViolation, "_INBOX.x"), "", false},
		{errors.New(`Permissions Violation for Publish to "orders.secret"`), "", false}, // not nats.go's
		{nats.ErrSlowConsumer, "", false},
	} {
		if subject, ok := Refused(c.err); subject != c.subject || ok != c.ok {
			t.Errorf("Refused(%v) = %q, %v; want %q, %v", c.err, subject, ok, c.subject, c.ok)
		}
	}
}

// TestWatches: a subject's watch is called once, for its connection and
// subject only; a connection's watch for every refusal on it; neither
// after Stop.
func TestWatches(t *testing.T) {
	nc1, nc2 := &nats.Conn{}, &nats.Conn{}
	var got []string
	note := func(what string) func(error) {
		return func(err error) {
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("%s called with %v", what, err)
			}
			got = append(got, what)
		}
	}
	a := Subject(nc1, "a", note("a"))
	defer a.Stop()
	b := Subject(nc1, "b", note("b"))
	all := All(nc1, func(subject string, err error) { note("all " + subject)(err) })
	other := All(nc2, func(subject string, err error) { note("nc2 " + subject)(err) })
	defer other.Stop()

	Record(nc1, refusedErr("a"))
	Record(nc1, refusedErr("a")) // a's watch was for one publish: not again
	Record(nc1, nats.ErrSlowConsumer)
	b.Stop()
	Record(nc1, refusedErr("b"))
	all.Stop()
	Record(nc1, refusedErr("c"))
	want := []string{"a", "all a", "all a", "all b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("calls %q, want %q", got, want)
	}

	// Stopping a watch that a refusal ended leaves a newer one in place.
	got = nil
	again := Subject(nc1, "a", note("a again"))
	defer again.Stop()
	a.Stop()
	Record(nc1, refusedErr("a"))
	if fmt.Sprint(got) != "[a again]" {
		t.Errorf("calls %q, want [a again]", got)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.subject) != 0 || len(reg.all) != 1 {
		t.Errorf("registry holds %d subject keys and %d connections, want 0 and 1 (nc2's)", len(reg.subject), len(reg.all))
	}
}
