package perm

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unsafe"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func mustCompile(t testing.TB, s Set) *Matcher {
	t.Helper()
	m, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", s, err)
	}
	return m
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  Set
		bad  string // pattern the error must name; "" when valid
	}{
		{"empty set", Set{}, ""},
		{"valid wildcards", Set{Allow: []string{"*", ">", "a.*.c", "a.>", "*.>", "$JS.API.>"}, Deny: []string{"a.b"}}, ""},
		{"wildcard chars inside tokens are literal", Set{Allow: []string{"a*", "a>b", "*a.>b", "a.b>"}}, ""},
		{"non-ascii", Set{Allow: []string{"zamówienia.*"}}, ""},
		{"empty pattern", Set{Allow: []string{""}}, `""`},
		{"empty middle token", Set{Allow: []string{"a..b"}}, `"a..b"`},
		{"leading dot", Set{Allow: []string{".a"}}, `".a"`},
		{"trailing dot", Set{Allow: []string{"a."}}, `"a."`},
		{"lone dot", Set{Deny: []string{"."}}, `"."`},
		{"space", Set{Allow: []string{"a b"}}, `"a b"`},
		{"queue group form", Set{Allow: []string{"a.b queue"}}, `"a.b queue"`},
		{"tab", Set{Deny: []string{"a.\tb"}}, `"a.\tb"`},
		{"newline", Set{Deny: []string{"a\n"}}, `"a\n"`},
		{"lone whitespace token", Set{Deny: []string{"a.\r"}}, `"a.\r"`},
		{"form feed", Set{Deny: []string{"\f"}}, `"\f"`},
		{"fwc not last", Set{Allow: []string{"a.>.b"}}, `"a.>.b"`},
		{"fwc first of two", Set{Deny: []string{">.a"}}, `">.a"`},
		{"second pattern bad", Set{Allow: []string{"a", "b..c"}}, `"b..c"`},
		{"deny bad after good allow", Set{Allow: []string{"a.>"}, Deny: []string{"a.>.>"}}, `"a.>.>"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile(tc.set)
			if tc.bad == "" {
				if err != nil || m == nil {
					t.Fatalf("Compile = %v, %v; want a matcher", m, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("Compile err = %v; want ErrInvalidPattern", err)
			}
			if m != nil {
				t.Errorf("Compile returned a matcher with error %v", err)
			}
			if !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("error %q does not name %s", err, tc.bad)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     Set
		subject string
		want    bool
	}{
		{"empty set allows all", Set{}, "a.b", true},
		{"literal allow", Set{Allow: []string{"orders.new"}}, "orders.new", true},
		{"literal allow other", Set{Allow: []string{"orders.new"}}, "orders.old", false},
		{"literal allow is not prefix", Set{Allow: []string{"orders"}}, "orders.new", false},
		{"pwc one token", Set{Allow: []string{"orders.*"}}, "orders.new", true},
		{"pwc not two tokens", Set{Allow: []string{"orders.*"}}, "orders.new.eu", false},
		{"pwc not zero tokens", Set{Allow: []string{"orders.*"}}, "orders", false},
		{"fwc one token", Set{Allow: []string{"orders.>"}}, "orders.new", true},
		{"fwc many tokens", Set{Allow: []string{"orders.>"}}, "orders.new.eu.1", true},
		{"fwc not zero tokens", Set{Allow: []string{"orders.>"}}, "orders", false},
		{"fwc alone", Set{Allow: []string{">"}}, "x", true},
		{"pwc in middle", Set{Allow: []string{"a.*.c"}}, "a.b.c", true},
		{"pwc in middle mismatch", Set{Allow: []string{"a.*.c"}}, "a.b.d", false},
		{"token is not prefix", Set{Allow: []string{"ord.*"}}, "orders.new", false},
		{"star inside token is literal", Set{Allow: []string{"a*"}}, "ab", false},
		{"star inside token matches itself", Set{Allow: []string{"a*"}}, "a*", true},
		{"deny wins over allow", Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}, "orders.secret", false},
		{"deny leaves others", Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}, "orders.public", true},
		{"empty allow with deny", Set{Deny: []string{"orders.secret"}}, "anything.else", true},
		{"empty allow with deny denied", Set{Deny: []string{"orders.*"}}, "orders.secret", false},
		{"deny fwc", Set{Deny: []string{">"}}, "a", false},
		{"second allow", Set{Allow: []string{"a", "b.*"}}, "b.c", true},
		{"wildcard subject never allowed", Set{}, "orders.*", false},
		{"fwc subject never allowed", Set{Allow: []string{">"}}, "orders.>", false},
		{"empty subject", Set{}, "", false},
		{"empty token", Set{}, "a..b", false},
		{"trailing dot", Set{Allow: []string{"a.>"}}, "a.", false},
		{"whitespace", Set{}, "a b", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, tc.set)
			if got := m.Allows(tc.subject); got != tc.want {
				t.Errorf("Allows(%q) with %+v = %v; want %v", tc.subject, tc.set, got, tc.want)
			}
			if got := m.AllowsAll(tc.subject); got != tc.want && !strings.ContainsAny(tc.subject, "*>") {
				t.Errorf("AllowsAll(literal %q) = %v; Allows = %v", tc.subject, got, tc.want)
			}
		})
	}
}

func TestAllowsAll(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    Set
		filter string
		want   bool
	}{
		{"pwc subset of fwc", Set{Allow: []string{"orders.>"}}, "orders.*", true},
		{"fwc not subset of pwc", Set{Allow: []string{"orders.*"}}, "orders.>", false},
		{"all not subset of orders", Set{Allow: []string{"orders.>"}}, ">", false},
		{"equal wildcard", Set{Allow: []string{"orders.*"}}, "orders.*", true},
		{"literal subset", Set{Allow: []string{"orders.*"}}, "orders.new", true},
		{"pwc not subset of literal", Set{Allow: []string{"orders.new"}}, "orders.*", false},
		{"deeper fwc subset", Set{Allow: []string{"orders.>"}}, "orders.*.>", true},
		{"fwc not subset of deeper", Set{Allow: []string{"orders.*.>"}}, "orders.>", false},
		{"union is not enough", Set{Allow: []string{"orders.*", "orders.*.>"}}, "orders.>", false},
		{"second allow covers", Set{Allow: []string{"x", "orders.>"}}, "orders.*.eu", true},
		{"deny intersects pwc filter", Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}, "orders.*", false},
		{"deny intersects fwc filter", Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret.*"}}, "orders.>", false},
		{"deny disjoint", Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}, "orders.*.eu", true},
		{"deny crosswise pwc", Set{Deny: []string{"*.b"}}, "a.*", false},
		{"deny literal disjoint", Set{Deny: []string{"a.c"}}, "a.b", true},
		{"empty allow with deny", Set{Deny: []string{"admin.>"}}, "orders.>", true},
		{"empty allow with deny all", Set{Deny: []string{"admin.>"}}, ">", false},
		{"empty set", Set{}, ">", true},
		{"allow fwc alone", Set{Allow: []string{">"}}, "*.*.>", true},
		{"invalid filter", Set{}, "a..b", false},
		{"invalid fwc filter", Set{}, "a.>.b", false},
		{"empty filter", Set{}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, tc.set)
			if got := m.AllowsAll(tc.filter); got != tc.want {
				t.Errorf("AllowsAll(%q) with %+v = %v; want %v", tc.filter, tc.set, got, tc.want)
			}
		})
	}
}

func TestSubsetAndIntersects(t *testing.T) {
	for _, tc := range []struct {
		a, b               string
		subset, intersects bool
	}{
		{"orders.*", "orders.>", true, true},
		{"orders.>", "orders.*", false, true},
		{">", "orders.>", false, true},
		{"orders.>", ">", true, true},
		{"*.b", "a.*", false, true},
		{"a.b", "a.c", false, false},
		{"orders.*", "orders.secret", false, true},
		{"orders.secret", "orders.*", true, true},
		{"a", "a.>", false, false},
		{"a.>", "a", false, false},
		{"*", ">", true, true},
		{">", "*", false, true},
		{"a.*.c", "a.b.*", false, true},
		{"a.*", "b.>", false, false},
		{"a.*.>", "a.>", true, true},
		{"*.*", "*.*.*", false, false},
		{"*.>", "a.b.c.*", false, true},
	} {
		sa, sb := split(nil, tc.a), split(nil, tc.b)
		if got := subset(sa, sb); got != tc.subset {
			t.Errorf("subset(%q, %q) = %v; want %v", tc.a, tc.b, got, tc.subset)
		}
		if got := intersects(sa, sb); got != tc.intersects {
			t.Errorf("intersects(%q, %q) = %v; want %v", tc.a, tc.b, got, tc.intersects)
		}
		if got := intersects(sb, sa); got != tc.intersects {
			t.Errorf("intersects(%q, %q) = %v; want %v", tc.b, tc.a, got, tc.intersects)
		}
	}
}

// TestSubsetAndIntersectsExhaustive checks subset and intersects on every
// valid pattern of up to three tokens over {a, b, *, >} against their
// meaning (sets of literal subjects, enumerated up to four tokens over
// {a, b, c}, c standing for any other token) and against nats-server's
// SubjectMatchesFilter and SubjectsCollide.
func TestSubsetAndIntersectsExhaustive(t *testing.T) {
	var pats []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		for _, tok := range []string{"a", "b", "*", ">"} {
			p := tok
			if prefix != "" {
				p = prefix + "." + tok
			}
			pats = append(pats, p)
			if tok != ">" && n > 1 {
				gen(p, n-1)
			}
		}
	}
	gen("", 3)
	var subjects []string
	var genS func(prefix string, n int)
	genS = func(prefix string, n int) {
		for _, tok := range []string{"a", "b", "c"} {
			s := tok
			if prefix != "" {
				s = prefix + "." + tok
			}
			subjects = append(subjects, s)
			if n > 1 {
				genS(s, n-1)
			}
		}
	}
	genS("", 4)
	matchSet := make(map[string][]bool, len(pats))
	for _, p := range pats {
		pt, err := compilePattern("allow", p)
		if err != nil {
			t.Fatal(err)
		}
		set := make([]bool, len(subjects))
		for i, s := range subjects {
			n, _ := literalTokens(s)
			set[i] = pt.matches(s, n)
		}
		matchSet[p] = set
	}
	for _, a := range pats {
		for _, b := range pats {
			wantSub, wantInt := true, false
			for i := range subjects {
				if matchSet[a][i] && !matchSet[b][i] {
					wantSub = false
				}
				if matchSet[a][i] && matchSet[b][i] {
					wantInt = true
				}
			}
			sa, sb := split(nil, a), split(nil, b)
			if got := subset(sa, sb); got != wantSub {
				t.Errorf("subset(%q, %q) = %v; by enumeration %v", a, b, got, wantSub)
			}
			if got := intersects(sa, sb); got != wantInt {
				t.Errorf("intersects(%q, %q) = %v; by enumeration %v", a, b, got, wantInt)
			}
			if got := natsserver.SubjectMatchesFilter(a, b); got != wantSub {
				t.Errorf("nats-server SubjectMatchesFilter(%q, %q) = %v; by enumeration %v", a, b, got, wantSub)
			}
			if got := natsserver.SubjectsCollide(a, b); got != wantInt {
				t.Errorf("nats-server SubjectsCollide(%q, %q) = %v; by enumeration %v", a, b, got, wantInt)
			}
		}
	}
	if len(pats) != 52 || len(subjects) != 120 {
		t.Fatalf("enumerated %d patterns and %d subjects; want 52 and 120", len(pats), len(subjects))
	}
}

// TestIntersectsExported checks the exported form on the reserved spaces
// the bridge keeps streams out of, and on invalid patterns.
func TestIntersectsExported(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{">", "_INBOX.>", true},
		{"*.>", "_INBOX.>", true},
		{"_INBOX.*", "_INBOX.>", true},
		{"_INBOX.a.b", "_INBOX.>", true},
		{"*.x", "$JS.>", true},
		{"_INBOX", "_INBOX.>", false},
		{"inbox.>", "_INBOX.>", false},
		{"orders.>", "$JS.>", false},
		{"$KV.bucket.>", "$JS.>", false},
		{"a..b", ">", false},
		{"", ">", false},
	} {
		if got := Intersects(tc.a, tc.b); got != tc.want {
			t.Errorf("Intersects(%q, %q) = %v; want %v", tc.a, tc.b, got, tc.want)
		}
		if got := Intersects(tc.b, tc.a); got != tc.want {
			t.Errorf("Intersects(%q, %q) = %v; want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestNilAndZeroMatcher(t *testing.T) {
	var m *Matcher
	for _, s := range []string{"a", "a.b", ">", "*"} {
		if m.Allows(s) || m.AllowsAll(s) {
			t.Errorf("nil matcher allows %q", s)
		}
		if (&Matcher{}).Allows(s) || (&Matcher{}).AllowsAll(s) {
			t.Errorf("zero matcher allows %q", s)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	m := mustCompile(t, Set{Allow: []string{"orders.>", "audit.*"}, Deny: []string{"orders.secret"}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if !m.Allows("orders.new") || m.Allows("orders.secret") || !m.AllowsAll("audit.*") || m.AllowsAll("orders.*") {
					t.Error("wrong answer under concurrency")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAllowsDoesNotAllocate(t *testing.T) {
	m := mustCompile(t, benchSet)
	allocs := testing.AllocsPerRun(100, func() {
		for _, s := range benchSubjects {
			m.Allows(s)
		}
	})
	if allocs != 0 {
		t.Errorf("Allows allocates %v times per run", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		m.AllowsAll("orders.*.eu")
		m.AllowsAll("metrics.>")
	})
	if allocs != 0 {
		t.Errorf("AllowsAll allocates %v times per run", allocs)
	}
}

// TestServerSubscribeIsLooser pins down, on nats-server's own Sublist, the
// subscribe decisions that the AllowsAll doc says are looser than it.
func TestServerSubscribeIsLooser(t *testing.T) {
	for _, tc := range []struct {
		set    Set
		filter string
	}{
		{Set{Allow: []string{"orders.*"}}, "orders.>"},
		{Set{Deny: []string{"orders.secret"}}, "orders.*"},
	} {
		m := mustCompile(t, tc.set)
		if !serverCanSubscribe(t, tc.set, tc.filter) {
			t.Errorf("nats-server refuses subscribing %q with %+v; AllowsAll doc is wrong", tc.filter, tc.set)
		}
		if m.AllowsAll(tc.filter) {
			t.Errorf("AllowsAll(%q) with %+v = true", tc.filter, tc.set)
		}
	}
}

// --- nats-server's own decision ---

// newServerSublist builds the Sublist nats-server's client.setPermissions
// builds for one permission list: the same constructor and Insert, with a
// subscription whose subject is the pattern. The subscription type is
// unexported, so it is made through reflection; only its subject is set,
// as setPermissions does.
func newServerSublist(t testing.TB, patterns []string) *natsserver.Sublist {
	t.Helper()
	sl := natsserver.NewSublistWithCache()
	insert := reflect.ValueOf(sl).MethodByName("Insert")
	if !insert.IsValid() || insert.Type().NumIn() != 1 || insert.Type().In(0).Kind() != reflect.Pointer {
		t.Fatalf("nats-server Sublist.Insert has changed shape: %v", insert)
	}
	for _, p := range patterns {
		sub := reflect.New(insert.Type().In(0).Elem())
		f := sub.Elem().FieldByName("subject")
		if !f.IsValid() || f.Type() != reflect.TypeFor[[]byte]() {
			t.Fatalf("nats-server subscription.subject has changed shape")
		}
		reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().SetBytes([]byte(p))
		if err, _ := insert.Call([]reflect.Value{sub})[0].Interface().(error); err != nil {
			t.Fatalf("nats-server Sublist.Insert(%q): %v", p, err)
		}
	}
	return sl
}

// serverPubAllowed is nats-server's client.pubAllowedFullCheck for a CLIENT
// connection without response permissions: NumInterest on the allow
// Sublist (when there is an allow list) and then on the deny Sublist.
func serverPubAllowed(t testing.TB, s Set, subject string) bool {
	allowed := true
	if len(s.Allow) > 0 {
		np, _ := newServerSublist(t, s.Allow).NumInterest(subject)
		allowed = np != 0
	}
	if allowed && len(s.Deny) > 0 {
		np, _ := newServerSublist(t, s.Deny).NumInterest(subject)
		allowed = np == 0
	}
	return allowed
}

// serverCanSubscribe is nats-server's client.canSubscribeInternal for a
// CLIENT connection without a queue group: Match on the allow Sublist and
// then on the deny Sublist. (Delivery-time deny filtering comes later.)
func serverCanSubscribe(t testing.TB, s Set, filter string) bool {
	psubs := func(r *natsserver.SublistResult) int {
		return reflect.ValueOf(r).Elem().FieldByName("psubs").Len()
	}
	allowed := true
	if len(s.Allow) > 0 {
		allowed = psubs(newServerSublist(t, s.Allow).Match(filter)) > 0
	}
	if allowed && len(s.Deny) > 0 {
		allowed = psubs(newServerSublist(t, s.Deny).Match(filter)) == 0
	}
	return allowed
}

// refAllows is the publish decision from nats-server's exported
// SubjectMatchesFilter.
func refAllows(s Set, subject string) bool {
	allowed := len(s.Allow) == 0
	for _, a := range s.Allow {
		allowed = allowed || natsserver.SubjectMatchesFilter(subject, a)
	}
	for _, d := range s.Deny {
		allowed = allowed && !natsserver.SubjectMatchesFilter(subject, d)
	}
	return allowed
}

// refAllowsAll is the AllowsAll decision from nats-server's exported
// SubjectMatchesFilter (which, given a wildcard subject, is a subset test)
// and SubjectsCollide (an intersection test).
func refAllowsAll(s Set, filter string) bool {
	allowed := len(s.Allow) == 0
	for _, a := range s.Allow {
		allowed = allowed || natsserver.SubjectMatchesFilter(filter, a)
	}
	for _, d := range s.Deny {
		allowed = allowed && !natsserver.SubjectsCollide(filter, d)
	}
	return allowed
}

// --- fuzzing ---

// caseGen turns fuzz bytes into patterns and subjects over a small
// alphabet; once the bytes run out it yields zeros.
type caseGen []byte

func (g *caseGen) byte() byte {
	if len(*g) == 0 {
		return 0
	}
	b := (*g)[0]
	*g = (*g)[1:]
	return b
}

// pattern is 1-4 tokens from {a, b, c, *, >}, stopping at '>'.
func (g *caseGen) pattern() string {
	var sb strings.Builder
	n := 1 + int(g.byte()%4)
	for i := range n {
		if i > 0 {
			sb.WriteByte('.')
		}
		tok := "abc*>"[g.byte()%5]
		sb.WriteByte(tok)
		if tok == '>' {
			break
		}
	}
	return sb.String()
}

// literal is 1-5 tokens from {a, b, c, d}.
func (g *caseGen) literal() string {
	var sb strings.Builder
	n := 1 + int(g.byte()%5)
	for i := range n {
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.WriteByte("abcd"[g.byte()%4])
	}
	return sb.String()
}

// set is 0-3 allow and 0-3 deny patterns.
func (g *caseGen) set() Set {
	var s Set
	b := g.byte()
	for range b % 4 {
		s.Allow = append(s.Allow, g.pattern())
	}
	for range (b >> 2) % 4 {
		s.Deny = append(s.Deny, g.pattern())
	}
	return s
}

// FuzzAllowsMatchesNATSServer compares Allows on generated permissions and
// literal subjects with nats-server's decision, computed twice: from its
// exported SubjectMatchesFilter, and on its real publish-permission path
// (Sublist.Insert and Sublist.NumInterest, as setPermissions and
// pubAllowedFullCheck use them).
func FuzzAllowsMatchesNATSServer(f *testing.F) {
	f.Add([]byte{0x01, 0x01, 0x00, 0x01, 0x00})
	f.Add([]byte{0x05, 0x01, 0x00, 0x04, 0x00, 0x00, 0x01, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := caseGen(data)
		s := g.set()
		m, err := Compile(s)
		if err != nil {
			t.Fatalf("Compile(%+v): %v", s, err)
		}
		for range 4 {
			subj := g.literal()
			got := m.Allows(subj)
			if want := refAllows(s, subj); got != want {
				t.Fatalf("Allows(%q) with %+v = %v; nats-server SubjectMatchesFilter says %v", subj, s, got, want)
			}
			if want := serverPubAllowed(t, s, subj); got != want {
				t.Fatalf("Allows(%q) with %+v = %v; nats-server Sublist says %v", subj, s, got, want)
			}
			if len(g) == 0 {
				break
			}
		}
	})
}

// FuzzAllowsAllMatchesNATSServer compares AllowsAll on generated
// permissions and wildcard filters with a decision from nats-server's
// exported SubjectMatchesFilter (subset) and SubjectsCollide
// (intersection), checks the subset and intersection helpers against those
// two directly, and checks that AllowsAll never admits a filter that
// nats-server's own subscribe check (Sublist.Match) refuses.
func FuzzAllowsAllMatchesNATSServer(f *testing.F) {
	f.Add([]byte{0x01, 0x01, 0x00, 0x04, 0x01, 0x00, 0x03})
	f.Add([]byte{0x05, 0x01, 0x00, 0x04, 0x01, 0x00, 0x01, 0x01, 0x00, 0x03})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := caseGen(data)
		s := g.set()
		m, err := Compile(s)
		if err != nil {
			t.Fatalf("Compile(%+v): %v", s, err)
		}
		for range 4 {
			filter := g.pattern()
			got := m.AllowsAll(filter)
			if want := refAllowsAll(s, filter); got != want {
				t.Fatalf("AllowsAll(%q) with %+v = %v; nats-server SubjectMatchesFilter/SubjectsCollide say %v", filter, s, got, want)
			}
			if got && !serverCanSubscribe(t, s, filter) {
				t.Fatalf("AllowsAll(%q) with %+v = true; nats-server refuses the subscription", filter, s)
			}
			if !strings.ContainsAny(filter, "*>") {
				if a := m.Allows(filter); got != a {
					t.Fatalf("AllowsAll(literal %q) = %v; Allows = %v", filter, got, a)
				}
			}
			ft := split(nil, filter)
			for _, p := range append(s.Allow[:len(s.Allow):len(s.Allow)], s.Deny...) {
				pt := split(nil, p)
				if got, want := subset(ft, pt), natsserver.SubjectMatchesFilter(filter, p); got != want {
					t.Fatalf("subset(%q, %q) = %v; nats-server SubjectMatchesFilter says %v", filter, p, got, want)
				}
				if got, want := intersects(ft, pt), natsserver.SubjectsCollide(filter, p); got != want {
					t.Fatalf("intersects(%q, %q) = %v; nats-server SubjectsCollide says %v", filter, p, got, want)
				}
			}
			if len(g) == 0 {
				break
			}
		}
	})
}

// FuzzCompileMatchesIsValidSubject checks Compile's validity decision on
// arbitrary strings against nats-server's IsValidSubject, and that Allows
// admits only what nats-server's IsValidPublishSubject calls a valid
// literal subject.
func FuzzCompileMatchesIsValidSubject(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "a..b", ".", "a.>", "a.>.b", "*", "a b", "a\t", "a*.>b", "\f", ">.>", "a.*.>"} {
		f.Add(s)
	}
	all := mustCompile(f, Set{})
	f.Fuzz(func(t *testing.T, s string) {
		valid := natsserver.IsValidSubject(s)
		_, errA := Compile(Set{Allow: []string{s}})
		_, errD := Compile(Set{Allow: []string{"a"}, Deny: []string{s}})
		if (errA == nil) != valid || (errD == nil) != valid {
			t.Fatalf("Compile(%q) errors %v, %v; nats-server IsValidSubject = %v", s, errA, errD, valid)
		}
		if errA != nil && !errors.Is(errA, ErrInvalidPattern) {
			t.Fatalf("Compile(%q) error %v does not wrap ErrInvalidPattern", s, errA)
		}
		if got, want := all.Allows(s), natsserver.IsValidPublishSubject(s); got != want {
			t.Fatalf("Allows(%q) with no restrictions = %v; nats-server IsValidPublishSubject = %v", s, got, want)
		}
		if got := all.AllowsAll(s); got != valid {
			t.Fatalf("AllowsAll(%q) with no restrictions = %v; nats-server IsValidSubject = %v", s, got, valid)
		}
	})
}

// --- benchmark ---

var benchSet = Set{
	Allow: []string{
		"orders.>", "payments.*.created", "payments.*.settled", "audit.*",
		"inventory.eu.*", "inventory.us.*", "$JS.API.INFO", "metrics.>",
	},
	Deny: []string{"orders.secret", "orders.*.internal"},
}

var benchSubjects = []string{
	"orders.new", "orders.secret", "orders.eu.internal", "payments.42.created",
	"payments.42.refunded", "audit.login", "inventory.eu.sku1", "$JS.API.INFO",
	"metrics.cpu.host1.core3", "unknown.subject.here",
}

func BenchmarkAllows(b *testing.B) {
	m := mustCompile(b, benchSet)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Allows(benchSubjects[i])
		i++
		if i == len(benchSubjects) {
			i = 0
		}
	}
}

func BenchmarkAllowsAll(b *testing.B) {
	m := mustCompile(b, benchSet)
	filters := []string{"orders.*", "payments.*.created", "metrics.>", "inventory.*.sku1", "audit.login"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.AllowsAll(filters[i])
		i++
		if i == len(filters) {
			i = 0
		}
	}
}
