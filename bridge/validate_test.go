package bridge

import (
	"errors"
	"math"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// pubWantField checks that err is a FieldError for field wrapping sentinel
// (or that err is nil when sentinel is nil).
func pubWantField(t *testing.T, what string, err error, field string, sentinel error) {
	t.Helper()
	if sentinel == nil {
		if err != nil {
			t.Errorf("%s: %v, want accepted", what, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: accepted, want %v", what, sentinel)
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != field {
		t.Errorf("%s: %v (%T), want a FieldError for %q", what, err, err, field)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: %v, want it to wrap %v", what, err, sentinel)
	}
	if st, _ := Status(err); st.Message() == "" || !strings.Contains(st.Message(), field) {
		t.Errorf("%s: status message %q does not name the field %q", what, st.Message(), field)
	}
}

func TestValidatePublishSubject(t *testing.T) {
	valid := []string{
		"a", "a.b", "orders.eu.1", "a-b_c~d+e!", "é.ü.中文", "$KV.bucket.key", "$O.store.C.x",
		"$JS", "$JSX.a", "JS.API.x", "x.$JS.API.STREAM.DELETE.X", "_INBOX", "_INBOX2.x", "_inbox.x", "$js.api.x", "$SYS",
		"a." + strings.Repeat("b", 1022), // 1024 bytes
		"\u00a0", "a.\u2028",             // NATS splits on ASCII whitespace only
	}
	for _, s := range valid {
		pubWantField(t, strconv.Quote(s), validatePublishSubject("subject", s), "subject", nil)
	}
	invalid := []string{
		"", ".", "..", "a.", ".a", "a..b", "a.b.",
		"*", ">", "a.*", "a.>", "a.*.b", "*.a", ">.a", "a.>.b", "a.b*", "a*", "a>", "a.*b", "a.b>c",
		" ", "a b", " a", "a ", "a\tb", "a\nb", "a\rb", "a\x00b", "a\x01", "a\x1f", "a\x7f", "\x7f",
		"\xff", "a.\xc3", "a.\xed\xa0\x80",
		"$JS.API.STREAM.DELETE.X", "$JS.API.STREAM.PURGE.X", "$JS.ACK.S.C.1.1.1.1.1", "$JS.x",
		"$JSC.x", "$SYS.REQ.SERVER.PING", "$NRG.x", "$SRV.PING", "_INBOX.x", "_INBOX.abc.def",
		"_JETWAY.v1.sessions", "_JETWAY.v1.push.state", "_JETWAY.x",
		"a." + strings.Repeat("b", 1023), // 1025 bytes
	}
	for _, s := range invalid {
		pubWantField(t, strconv.Quote(s), validatePublishSubject("publish.subject", s), "publish.subject", ErrInvalidSubject)
	}
}

func TestValidateFilterSubject(t *testing.T) {
	valid := []string{"a", "*", ">", "a.*", "a.>", "*.b.>", "a.*.c", "*.*", "$JS.API.>", "_INBOX.>", "a." + strings.Repeat("b", 1022)}
	for _, s := range valid {
		pubWantField(t, strconv.Quote(s), validateFilterSubject("config.subjects", s), "config.subjects", nil)
	}
	invalid := []string{"", "a.>.b", ">.a", ">.>", "a.b*", "a*", "*a", "a>", "a..b", "a.", ".a", "a b", "a\t*", "\xff", "a." + strings.Repeat("b", 1023)}
	for _, s := range invalid {
		pubWantField(t, strconv.Quote(s), validateFilterSubject("config.subjects", s), "config.subjects", ErrInvalidSubject)
	}
}

func TestValidateName(t *testing.T) {
	valid := []string{"ORDERS", "a", "a-b_c", "KV_bucket", "$G", "é中", "a~b+c=d", strings.Repeat("n", 255)}
	for _, s := range valid {
		pubWantField(t, strconv.Quote(s), validateName("name", s), "name", nil)
	}
	invalid := []string{"", "a.b", ".", "a*", "*", "a>", ">", "a/b", "a\\b", "a b", " ", "a\tb", "a\nb", "a\x00", "a\x7f", "\xff", "a\xc3", strings.Repeat("n", 256)}
	for _, s := range invalid {
		pubWantField(t, strconv.Quote(s), validateName("config.name", s), "config.name", ErrInvalidName)
	}
}

func TestValidateHeader(t *testing.T) {
	valid := []struct {
		name   string
		values []string
	}{
		{"X-A", []string{"1"}},
		{"X-A", []string{"1", "2", "3"}},
		{"x-lower", []string{""}},
		{"X", []string{"héllo wörld: \t ok"}},
		{"Nats", []string{"1"}},
		{"Natsy", []string{"1"}},
		{"X-Nats-A", []string{"1"}},
		{"Nats_Foo", []string{"1"}},
		{"!#$%&'*+.^_`|~", []string{"v"}},
		{strings.Repeat("h", 255), []string{"v"}},
	}
	for _, c := range valid {
		pubWantField(t, strconv.Quote(c.name), validateHeader("headers", c.name, c.values), "headers", nil)
	}
	invalid := []struct {
		name   string
		values []string
	}{
		{"", []string{"1"}},
		{strings.Repeat("h", 256), []string{"v"}},
		{"X:A", []string{"1"}},
		{"X A", []string{"1"}},
		{"X\tA", []string{"1"}},
		{"X\r\nA", []string{"1"}},
		{"X\x00", []string{"1"}},
		{"X\x7f", []string{"1"}},
		{"Xé", []string{"1"}},
		{"\xff", []string{"1"}},
		{"Nats-Msg-Id", []string{"1"}},
		{"nats-msg-id", []string{"1"}},
		{"NATS-TTL", []string{"1s"}},
		{"Nats-", []string{"1"}},
		{"nAtS-Expected-Stream", []string{"S"}},
		{"X-A", nil},
		{"X-A", []string{}},
		{"X-A", []string{"a\r\nNats-Msg-Id: x"}},
		{"X-A", []string{"ok", "a\nb"}},
		{"X-A", []string{"a\r"}},
		{"X-A", []string{"\xff"}},
	}
	for _, c := range invalid {
		pubWantField(t, strconv.Quote(c.name)+" "+strconv.Quote(strings.Join(c.values, "|")), validateHeader("publish.headers", c.name, c.values), "publish.headers", ErrInvalidHeader)
	}
}

func TestValidateMsgID(t *testing.T) {
	for _, s := range []string{"", "a", "order-1:retry 2", "é", strings.Repeat("m", 255)} {
		pubWantField(t, strconv.Quote(s), validateMsgID("msg_id", s), "msg_id", nil)
	}
	for _, s := range []string{strings.Repeat("m", 256), "a\rb", "a\nb", "\r\n", "\xff", "a\xc3"} {
		pubWantField(t, strconv.Quote(s), validateMsgID("msg_id", s), "msg_id", ErrInvalidArgument)
	}
}

func TestValidatePageToken(t *testing.T) {
	if off, err := parsePageToken("page_token", ""); err != nil || off != 0 {
		t.Errorf(`parsePageToken("") = %d, %v; want 0, nil`, off, err)
	}
	for _, off := range []int{0, 1, 99, 100, 1000, 1 << 31, math.MaxInt} {
		tok := pageToken(off)
		got, err := parsePageToken("page_token", tok)
		if err != nil || got != off {
			t.Errorf("parsePageToken(pageToken(%d) = %q) = %d, %v", off, tok, got, err)
		}
	}
	for _, tok := range []string{
		"x", "o", "O1", "o-1", "o+1", "o01", "o00", "o1 ", " o1", "o 1", "o1x", "o1\n", "o1.5", "o0x10",
		"o99999999999999999999", "o" + strconv.Itoa(math.MaxInt) + "0", "1", "oo1", "o\u0661",
	} {
		off, err := parsePageToken("page_token", tok)
		pubWantField(t, strconv.Quote(tok), err, "page_token", ErrInvalidArgument)
		if off != 0 {
			t.Errorf("parsePageToken(%q) = %d with an error, want 0", tok, off)
		}
	}
}

// pubReservedPrefixes are the subject spaces publishing must never reach,
// written out here rather than taken from validate.go.
var pubReservedPrefixes = []string{"$JS.", "$JSC.", "$SYS.", "$NRG.", "$SRV.", "_INBOX."}

func FuzzSubject(f *testing.F) {
	for _, s := range []string{"a", "a.b", "a..b", "foo.*", "foo.>", "$JS.API.STREAM.DELETE.X", "_INBOX.x", "a b", "", "é.ü", "$KV.b.k", "a.\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := validatePublishSubject("subject", s)
		filterErr := validateFilterSubject("subject", s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSubject) {
				t.Fatalf("validatePublishSubject(%q) = %v, want ErrInvalidSubject", s, err)
			}
			return
		}
		if filterErr != nil {
			t.Fatalf("%q is a valid publish subject but not a valid filter: %v", s, filterErr)
		}
		if s == "" || len(s) > maxSubjectLen || !utf8.ValidString(s) {
			t.Fatalf("accepted %q (%d bytes)", s, len(s))
		}
		for _, tok := range strings.Split(s, ".") {
			if tok == "" || tok == "*" || tok == ">" {
				t.Fatalf("accepted %q with token %q", s, tok)
			}
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c == 0x7f || c == '*' || c == '>' {
				t.Fatalf("accepted %q with byte %#x", s, c)
			}
		}
		for _, p := range pubReservedPrefixes {
			if strings.HasPrefix(s, p) {
				t.Fatalf("accepted %q in reserved space %s", s, p)
			}
		}
	})
}

func FuzzName(f *testing.F) {
	for _, s := range []string{"ORDERS", "a.b", "a b", "", "a/b", "é", strings.Repeat("n", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := validateName("name", s)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("validateName(%q) = %v, want ErrInvalidName", s, err)
			}
			return
		}
		if s == "" || len(s) > maxNameLen || !utf8.ValidString(s) || strings.ContainsAny(s, ".*>/\\") {
			t.Fatalf("accepted %q", s)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c == 0x7f {
				t.Fatalf("accepted %q with byte %#x", s, c)
			}
		}
		// A valid name is also a single valid subject token.
		if err := validatePublishSubject("subject", "x."+s); err != nil && len(s) < maxSubjectLen-2 {
			t.Fatalf("name %q is not a valid subject token: %v", s, err)
		}
	})
}

func FuzzHeader(f *testing.F) {
	f.Add("X-A", "1", "2")
	f.Add("Nats-Msg-Id", "1", "")
	f.Add("X:A", "1", "")
	f.Add("X-A", "a\r\nb", "")
	f.Add("", "v", "")
	f.Add("X", "\xff", "ok")
	f.Fuzz(func(t *testing.T, name, v1, v2 string) {
		values := []string{v1}
		if v2 != "" {
			values = append(values, v2)
		}
		err := validateHeader("headers", name, values)
		if err != nil {
			if !errors.Is(err, ErrInvalidHeader) {
				t.Fatalf("validateHeader(%q, %q) = %v, want ErrInvalidHeader", name, values, err)
			}
			return
		}
		if name == "" || len(name) > maxHeaderName || strings.ContainsAny(name, ":") || strings.HasPrefix(strings.ToLower(name), "nats-") {
			t.Fatalf("accepted name %q", name)
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("accepted name %q with byte %#x", name, c)
			}
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n") || !utf8.ValidString(v) {
				t.Fatalf("accepted value %q", v)
			}
		}
		// The header block NATS carries (as nats.go writes it: values
		// trimmed of surrounding ASCII space) parses back into exactly this
		// name and these values: no smuggled header lines.
		block := "NATS/1.0\r\n"
		var want []string
		for _, v := range values {
			v = textproto.TrimString(v)
			block += name + ": " + v + "\r\n"
			want = append(want, v)
		}
		h, err := nats.DecodeHeadersMsg([]byte(block + "\r\n"))
		if err != nil {
			t.Fatalf("header block %q: %v", block, err)
		}
		if len(h) != 1 || !slices.Equal(h[name], want) {
			t.Fatalf("header block %q decodes to %q, want %s: %q", block, h, name, want)
		}
	})
}

func FuzzPageToken(f *testing.F) {
	for _, s := range []string{"", "o0", "o1", "o100", "o-1", "o+1", "o01", "o1 ", "x", "o9223372036854775807", "o9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		off, err := parsePageToken("page_token", tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("parsePageToken(%q) = %v, want ErrInvalidArgument", tok, err)
			}
			return
		}
		if off < 0 {
			t.Fatalf("parsePageToken(%q) = %d", tok, off)
		}
		if tok == "" {
			if off != 0 {
				t.Fatalf(`parsePageToken("") = %d`, off)
			}
			return
		}
		if got := pageToken(off); got != tok {
			t.Fatalf("parsePageToken(%q) = %d, which encodes as %q", tok, off, got)
		}
	})
}
