// Package refusal delivers nats-server's refusals of a publish, and the
// loss of the connection that carried it, to the calls waiting on that
// publish.
//
// A publish the connection's NATS user may not make is not forwarded, and
// no reply comes: nats-server answers with an asynchronous -ERR
// ("Permissions Violation for Publish to "orders.secret"") that nats.go
// hands to the connection's error handler, not to the request. A
// JetStream publish would wait for its ack until its deadline. The
// connection's error handler calls Record; a call waiting on a publish
// watches its connection and ends as soon as the refusal of its subject
// arrives, with the refusal (which wraps nats.ErrPermissionViolation).
//
// Watches are keyed by connection in one registry for the process: the
// error handler is set when a connection is made, and nats.Conn has no
// place for the watches of its own. A refusal is matched by subject, not
// by publish: every publish to that subject on that connection is
// refused alike, unless nats-server's permissions changed in between (a
// configuration reload), when a late refusal may fail a newer call.
//
// A request in flight when its connection drops has no answer coming
// either: the server that would have answered is gone or has forgotten
// it. The connection's disconnect handler calls Lost, which ends every
// subject watch of the connection with ErrConnectionLost, so that such a
// call fails at once rather than at its deadline.
package refusal

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// Watch is a registration made by Subject or All; Stop ends it.
type Watch struct {
	nc      *nats.Conn
	subject string // "" for All
	f       func(subject string, err error)
}

type registry struct {
	mu      sync.Mutex
	subject map[key]map[*Watch]struct{}
	all     map[*nats.Conn]map[*Watch]struct{}
}

type key struct {
	nc      *nats.Conn
	subject string
}

var reg = registry{subject: map[key]map[*Watch]struct{}{}, all: map[*nats.Conn]map[*Watch]struct{}{}}

// Subject calls f (once at most, on nats.go's callback goroutine) when
// nats-server refuses a publish to subject on nc, until Stop.
func Subject(nc *nats.Conn, subject string, f func(err error)) *Watch {
	w := &Watch{nc: nc, subject: subject, f: func(_ string, err error) { f(err) }}
	reg.mu.Lock()
	k := key{nc, subject}
	if reg.subject[k] == nil {
		reg.subject[k] = map[*Watch]struct{}{}
	}
	reg.subject[k][w] = struct{}{}
	reg.mu.Unlock()
	return w
}

// All calls f for every publish nats-server refuses on nc, until Stop.
func All(nc *nats.Conn, f func(subject string, err error)) *Watch {
	w := &Watch{nc: nc, f: f}
	reg.mu.Lock()
	if reg.all[nc] == nil {
		reg.all[nc] = map[*Watch]struct{}{}
	}
	reg.all[nc][w] = struct{}{}
	reg.mu.Unlock()
	return w
}

// Stop ends the watch. Record calls the watches it found after releasing
// the registry, so f may still be called once by a Record under way when
// Stop returns: f must tolerate a late call.
func (w *Watch) Stop() {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if w.subject == "" {
		if m := reg.all[w.nc]; m != nil {
			delete(m, w)
			if len(m) == 0 {
				delete(reg.all, w.nc)
			}
		}
		return
	}
	// Record may have ended the subject's watches already, and others
	// may have been made since.
	k := key{w.nc, w.subject}
	if m := reg.subject[k]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(reg.subject, k)
		}
	}
}

// Record passes err, an asynchronous error of nc, to the watches of the
// subject it refuses. Other errors are ignored. Subject watches are ended
// by it: they are for one publish each.
func Record(nc *nats.Conn, err error) {
	subject, ok := Refused(err)
	if !ok {
		return
	}
	reg.mu.Lock()
	k := key{nc, subject}
	var fs []func(string, error)
	for w := range reg.subject[k] {
		fs = append(fs, w.f)
	}
	delete(reg.subject, k)
	for w := range reg.all[nc] {
		fs = append(fs, w.f)
	}
	reg.mu.Unlock()
	for _, f := range fs {
		f(subject, err)
	}
}

// ErrConnectionLost is what Lost passes to the watches: the request may
// or may not have reached NATS and been carried out.
var ErrConnectionLost = errors.New("the NATS connection was lost while the request awaited its answer")

// Lost ends every subject watch of nc with ErrConnectionLost (wrapping
// cause, when there is one). Watches made by All are not called: they
// follow a connection's life, not one request.
func Lost(nc *nats.Conn, cause error) {
	err := ErrConnectionLost
	if cause != nil {
		err = fmt.Errorf("%w: %w", ErrConnectionLost, cause)
	}
	reg.mu.Lock()
	var fs []func(string, error)
	var subjects []string
	for k, m := range reg.subject {
		if k.nc != nc {
			continue
		}
		for w := range m {
			fs, subjects = append(fs, w.f), append(subjects, k.subject)
		}
		delete(reg.subject, k)
	}
	reg.mu.Unlock()
	for i, f := range fs {
		f(subjects[i], err)
	}
}

// publishTo is how nats-server names the subject of a refused publish.
const publishTo = `Permissions Violation for Publish to `

// Refused returns the subject of a publish that err says nats-server
// refused.
func Refused(err error) (subject string, ok bool) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return "", false
	}
	msg := err.Error()
	i := strings.Index(msg, publishTo)
	if i < 0 {
		return "", false
	}
	subject, err = strconv.Unquote(strings.TrimSpace(msg[i+len(publishTo):]))
	return subject, err == nil && subject != ""
}
