package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// auditRecords reads the audit file's JSON lines.
func auditRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// findAudit returns the first record with every field of want.
func findAudit(recs []map[string]any, want map[string]string) map[string]any {
next:
	for _, r := range recs {
		for k, v := range want {
			if s, _ := r[k].(string); s != v {
				continue next
			}
		}
		return r
	}
	return nil
}

var madeID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestAuditAndRequestIDs: with --audit-log, admin writes, authorization
// refusals (one message of a PublishStream included) and authentication
// refusals are JSON lines naming who, what, the outcome and the request id
// the client sent (or was given back), and never a credential; the main
// log's lines of a call carry the same request id.
func TestAuditAndRequestIDs(t *testing.T) {
	const key = "tenant-a-key-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "tenant-a", APIKeyHashes: []string{auth.HashAPIKey(key)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"a.>"}},
			Admin:   &auth.AdminGrant{Streams: []string{"A"}, Write: true, Subjects: &perm.Set{Allow: []string{"a.>"}}},
		}},
	}})
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	logs, log := rfLogger(slog.LevelDebug)
	b := jetwaytest.StartWithLogger(t, log, func(c *config.Config) {
		c.Auth.ConfigFile = path
		c.Log.AuditFile = auditPath
	})
	ctx := jetwaytest.Context(t, 30*time.Second)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "ApiKey "+key, "x-request-id", "req-create-1")

	// An admin write over gRPC, its id echoed.
	var hdr metadata.MD
	if _, err := b.Admin.CreateStream(actx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "A", Subjects: []string{"a.>"}}}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "req-create-1" {
		t.Errorf("CreateStream header x-request-id %v, want [req-create-1]", got)
	}
	// A refused publish over gRPC, with no id: one is made and sent back.
	pctx := metadata.AppendToOutgoingContext(ctx, "authorization", "ApiKey "+key)
	hdr = nil
	if _, err := b.Messages.Publish(pctx, &jetwayv1.PublishRequest{Subject: "b.secret", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}, grpc.Header(&hdr)); err == nil {
		t.Fatal("publish to b.secret: OK")
	}
	made := hdr.Get("x-request-id")
	if len(made) != 1 || !madeID.MatchString(made[0]) {
		t.Fatalf("refused publish: x-request-id %v, want one made", made)
	}
	// One refused message of a PublishStream.
	ps, err := b.Messages.PublishStream(metadata.AppendToOutgoingContext(ctx, "authorization", "ApiKey "+key, "x-request-id", "req-stream-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Send(&jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{Subject: "b.stream", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := ps.Recv(); err != nil || resp.GetError() == nil {
		t.Fatalf("PublishStream to b.stream: %v %v, want a refusal", resp, err)
	}
	_ = ps.CloseSend()
	// A REST admin write refused (another stream), with the caller's id.
	r := b.Do(t, http.MethodDelete, "/v1/streams/B", "", "Authorization", "ApiKey "+key, "X-Request-Id", "req-rest-1")
	if r.Status != http.StatusForbidden || r.Header.Get("X-Request-Id") != "req-rest-1" {
		t.Errorf("REST DeleteStream B: %d, X-Request-Id %q; want 403 and req-rest-1", r.Status, r.Header.Get("X-Request-Id"))
	}
	if len(r.Header.Values("Grpc-Metadata-X-Request-Id")) != 0 {
		t.Errorf("REST response leaks Grpc-Metadata-X-Request-Id")
	}
	// A wrong key over REST with a malformed id: a new id, and the key in
	// no record.
	const wrong = "wrong-key-0123456789abcdefXYZ"
	r = b.Do(t, http.MethodGet, "/v1/streams", "", "Authorization", "ApiKey "+wrong, "X-Request-Id", "bad id\twith spaces")
	restID := r.Header.Get("X-Request-Id")
	if r.Status != http.StatusUnauthorized || !madeID.MatchString(restID) {
		t.Errorf("REST with a wrong key: %d, X-Request-Id %q; want 401 and a made id", r.Status, restID)
	}

	var recs []map[string]any
	jetwaytest.Eventually(t, 5*time.Second, "the audit records", func() error {
		recs = auditRecords(t, auditPath)
		for _, want := range []map[string]string{
			{"event": "admin.write", "identity": "tenant-a", "method": jetwayv1.AdminService_CreateStream_FullMethodName, "config.name": "A", "outcome": "ok", "request_id": "req-create-1"},
			{"event": "authorization.refused", "identity": "tenant-a", "check": "publish", "subject": "b.secret", "method": jetwayv1.MessageService_Publish_FullMethodName, "request_id": made[0]},
			{"event": "authorization.refused", "identity": "tenant-a", "check": "publish", "subject": "b.stream", "method": jetwayv1.MessageService_PublishStream_FullMethodName, "request_id": "req-stream-1"},
			{"event": "authorization.refused", "identity": "tenant-a", "check": "admin_write", "stream": "B", "request_id": "req-rest-1"},
			{"event": "admin.write", "identity": "tenant-a", "method": jetwayv1.AdminService_DeleteStream_FullMethodName, "name": "B", "outcome": "error", "code": "PermissionDenied", "request_id": "req-rest-1"},
			{"event": "authentication.refused", "request_id": restID},
		} {
			if findAudit(recs, want) == nil {
				return &auditMissing{want}
			}
		}
		return nil
	})
	for _, rec := range recs {
		if rec["log"] != "audit" || rec["msg"] != "audit" || rec["time"] == nil {
			t.Errorf("record %v: want log=audit, msg=audit and a time", rec)
		}
	}
	data, _ := os.ReadFile(auditPath)
	for _, secret := range []string{key, wrong, auth.HashAPIKey(key)} {
		if strings.Contains(string(data), secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a credential (%.8s…) is in the audit file or the log", secret)
		}
	}
	// The main log's line of the refused REST call names its id.
	if !strings.Contains(logs.String(), "request_id=req-rest-1") {
		t.Errorf("no main-log line names request_id=req-rest-1:\n%s", logs.String())
	}
	if fi, err := os.Stat(auditPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode: %v %v, want 0600", fi.Mode(), err)
	}
}

type auditMissing struct{ want map[string]string }

func (e *auditMissing) Error() string {
	b, _ := json.Marshal(e.want)
	return "no audit record with " + string(b)
}
