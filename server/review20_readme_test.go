package server_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// readmeSection is README.md from the heading line start to the next
// heading of the same level.
func readmeSection(t *testing.T, readme, start string) string {
	t.Helper()
	i := strings.Index(readme, "\n"+start+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", start)
	}
	rest := readme[i+len(start)+2:]
	level := start[:strings.Index(start, " ")+1]
	if j := strings.Index(rest, "\n"+level); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// readmeCreate matches a README curl command that creates a stream or a
// consumer, its continuation lines joined: the path and the -d body.
var readmeCreate = regexp.MustCompile(`curl -s -X POST localhost:8080(/v1/streams(?:/[A-Z]+/consumers)?) .*?-d '([^']*)'`)

// TestReviewReadmeDeadLetterCommands (review 20): a newcomer follows the
// README from "Try it" to "Dead letters" against one bridge: every stream
// and consumer those sections create, sent as written and in order, is
// created (the dead letters' consumer was "billing" again, which "Try it"
// had made without a dead-letter subject: 409 CONSUMER_EXISTS, and its
// dead letters were never written).
func TestReviewReadmeDeadLetterCommands(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	text := readmeSection(t, readme, "## Try it") + readmeSection(t, readme, "### Dead letters")
	text = strings.ReplaceAll(text, "\\\n", " ")
	cmds := readmeCreate.FindAllStringSubmatch(text, -1)
	if len(cmds) < 3 {
		t.Fatalf("found %d create commands in the README: %q", len(cmds), cmds)
	}
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters)
	for _, c := range cmds {
		r := b.Do(t, http.MethodPost, c[1], c[2], "Content-Type", "application/json")
		if r.Status != http.StatusOK {
			t.Errorf("README: POST %s %s: %d %s", c[1], c[2], r.Status, r.Body)
		}
	}
}
