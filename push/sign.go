package push

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// secretPrefix marks a Standard Webhooks secret.
const secretPrefix = "whsec_"

// newSecret is a fresh signing secret: "whsec_" and the standard base64 of
// 32 random bytes.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("push: random secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// secretKey is the HMAC key of a secret: the bytes its base64 encodes.
func secretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, errors.New("push: secret without the whsec_ prefix")
	}
	k, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(k) == 0 {
		return nil, errors.New("push: secret is not base64")
	}
	return k, nil
}

// sign is the webhook-signature header value of a request (Standard
// Webhooks): "v1," and the base64 HMAC-SHA256, under key, of
// id "." timestamp "." body.
func sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
