// Package browser is an example web app that uses the bridge from the
// browser, on an origin of its own: the page tails a stream with
// EventSource, publishes, and takes a message from a durable consumer and
// acks it, all with fetch and EventSource straight to the bridge.
//
// The page never sees the app's own credential. The app's server holds an
// API key and, for each page that asks (POST /session), mints a
// short-lived access token with it (POST /v1/access-tokens on the bridge)
// that may only consume, publish and ack on the app's stream.
// The page sends the token as "Authorization: Bearer …", and as
// ?access_token= on the one request that cannot carry a header, the
// EventSource of Subscribe.
//
// The bridge must list the app's origin in --allowed-origins: that grants
// the CORS answers the page's requests need (and lifts the cross-origin
// refusal of state-changing requests). A page on an origin not listed
// can read nothing and change nothing, whatever token it holds.
//
// POST /session authenticates no user: anyone who can reach the app gets a
// token. A real app mints only for its own signed-in users (its session
// cookie, its CSRF rule) and narrows each token to what that user may do.
package browser

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// Config is what the app serves the page and how it mints tokens.
type Config struct {
	// Bridge is the bridge's URL as the browser reaches it
	// (http://127.0.0.1:8080).
	Bridge string
	// APIKey is the app's credential on the bridge (never sent to the
	// page).
	APIKey string
	// Stream, Subject and Consumer are what the page uses: it tails
	// Stream, publishes to Subject and takes messages from the durable
	// Consumer of Stream.
	Stream, Subject, Consumer string
	// TokenTTL is the lifetime of the page's tokens; 0 is 10 minutes.
	TokenTTL time.Duration
	// Client calls the bridge; nil is a client with a 10 s timeout.
	Client *http.Client
	// Logger receives minting failures; nil discards.
	Logger *slog.Logger
}

// Handler serves the page, its config (GET /config.json) and its
// sessions (POST /session: {"token": "jwy_…", "expires_at": "…"}).
func Handler(c Config) http.Handler {
	if c.TokenTTL == 0 {
		c.TokenTTL = 10 * time.Minute
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	files, _ := fs.Sub(static, "static") // "static" is embedded: it exists
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(files))
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{
			"bridge": c.Bridge, "stream": c.Stream, "subject": c.Subject, "consumer": c.Consumer,
		})
	})
	mux.HandleFunc("POST /session", func(w http.ResponseWriter, r *http.Request) {
		tok, err := c.mint(r.Context())
		if err != nil {
			c.Logger.ErrorContext(r.Context(), "minting an access token", slog.Any("error", err))
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the bridge did not mint a token"})
			return
		}
		writeJSON(w, http.StatusOK, tok)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; connect-src 'self' "+c.Bridge+"; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

type session struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

// mint asks the bridge for a token that may consume, publish and ack on
// the app's stream only, within what the app's identity may (its grant
// bounds the subjects: a token narrowed by subjects could not take from
// the durable consumer, whose filters are an admin's).
func (c Config) mint(ctx context.Context) (session, error) {
	body, err := json.Marshal(map[string]any{
		"operations": []string{"OPERATION_CONSUME", "OPERATION_PUBLISH", "OPERATION_ACK"},
		"streams":    []string{c.Stream},
		"ttl":        fmt.Sprintf("%ds", int(c.TokenTTL/time.Second)),
	})
	if err != nil {
		return session{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Bridge+"/v1/access-tokens", bytes.NewReader(body))
	if err != nil {
		return session{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "ApiKey "+c.APIKey)
	resp, err := c.Client.Do(req)
	if err != nil {
		return session{}, fmt.Errorf("POST /v1/access-tokens: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return session{}, fmt.Errorf("POST /v1/access-tokens: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return session{}, fmt.Errorf("POST /v1/access-tokens: %s: %s", resp.Status, data)
	}
	var s session
	if err := json.Unmarshal(data, &s); err != nil || s.Token == "" {
		return session{}, fmt.Errorf("POST /v1/access-tokens: unexpected answer (%v)", err)
	}
	return s, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
