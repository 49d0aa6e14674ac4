package embedded

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// PasswordFileName is the file, in the data directory, that holds the
// client port's generated password.
const PasswordFileName = "embedded-nats-password"

// LoadOrGeneratePassword returns the password kept in path. When path does
// not exist it first writes a new one there: 32 random bytes, base64url,
// in a file of mode 0600 created exclusively (never through an existing
// file or link), its directory created 0700 if missing. A kept file that
// group or others may access is refused, as is an empty one. created says
// whether the password is new.
func LoadOrGeneratePassword(path string) (password string, created bool, err error) {
	if pw, err := readOwnerOnly(path); !errors.Is(err, fs.ErrNotExist) {
		return pw, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("embedded: password file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("embedded: password: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("embedded: password file: %w", err)
	}
	_, err = f.WriteString(pw + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", false, fmt.Errorf("embedded: password file: %w", err)
	}
	return pw, true, nil
}

// readOwnerOnly reads a password file only its owner may access.
func readOwnerOnly(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("embedded: password file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("embedded: password file %s has mode %04o: others may read it (chmod 600, or remove it for a new password)", path, perm)
	}
	// Someone else's file in a directory others may write is a password
	// planted for us: only one of our own is kept.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("embedded: password file %s belongs to uid %d, not to this process (%d): remove it for a new password", path, st.Uid, os.Geteuid())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("embedded: password file: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("embedded: password file %s is empty (remove it for a new password)", path)
	}
	return pw, nil
}
