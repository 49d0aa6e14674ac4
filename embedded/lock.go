package embedded

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// LockFileName is the file, in the data directory, whose lock a running
// embedded server holds. The lock is an exclusive advisory lock on the
// open file (flock; LockFileEx on Windows), not the file's existence: the
// operating system drops it when the holder exits, killed or not, so a
// file left behind never blocks a start. What the file holds only
// describes the holder, for the error a second server gets.
const LockFileName = "jetway.lock"

// ErrDataDirLocked is a data directory another embedded server (in this
// process or another) holds. The error is a *LockedError, which names the
// holder.
var ErrDataDirLocked = errors.New("embedded: data dir in use by another server")

// Holder describes the process holding a data directory, as it wrote it
// in the lock file.
type Holder struct {
	// PID is the holding process's id.
	PID int `json:"pid"`
	// Started is when it took the lock.
	Started time.Time `json:"started"`
	// Listen maps a listener's name (grpc, http, nats) to its address.
	Listen map[string]string `json:"listen,omitempty"`
}

// String is the holder for a person: pid, start time and listen addresses.
func (h Holder) String() string {
	parts := []string{fmt.Sprintf("pid %d", h.PID), "started " + h.Started.Format(time.RFC3339)}
	names := make([]string, 0, len(h.Listen))
	for name := range h.Listen {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		parts = append(parts, name+" "+h.Listen[name])
	}
	return strings.Join(parts, ", ")
}

// LockedError is a data directory another server holds. It matches
// ErrDataDirLocked with errors.Is.
type LockedError struct {
	// Dir is the data directory.
	Dir string
	// Holder is what the holder wrote in the lock file; nil when it has
	// written nothing readable yet (it is starting).
	Holder *Holder
}

func (e *LockedError) Error() string {
	who := "a holder that has not written its details yet (it may be starting)"
	if e.Holder != nil {
		who = e.Holder.String()
	}
	return fmt.Sprintf("embedded: data dir %s is in use by another bridge (%s): two servers on one store lose acknowledged writes; stop that one, or give this one another data dir (the lock is held on %s, and goes when its holder exits)",
		e.Dir, who, filepath.Join(e.Dir, LockFileName))
}

// Is makes errors.Is(err, ErrDataDirLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrDataDirLocked }

// DirLock is a data directory held by this process. Release it once the
// server using the directory has stopped.
type DirLock struct {
	dir    string
	mu     sync.Mutex
	f      *os.File // nil once released
	holder Holder
}

// Lock takes dir for this process, before anything else writes there: it
// creates dir (mode 0700) when missing, refuses one that is not a
// writable directory (naming the cause), takes the exclusive lock on
// dir/LockFileName without waiting, and writes this process's Holder into
// it, with listen (names to addresses, for the message another server
// gets; may be nil). A directory held by another server is a
// *LockedError (ErrDataDirLocked). Safe for concurrent use.
func Lock(dir string, listen map[string]string) (*DirLock, error) {
	if dir == "" {
		return nil, errors.New("embedded: data dir is required")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("embedded: data dir %s is not a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: data dir: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded: data dir %s is not writable: %w", dir, err)
	}
	busy, err := lockFile(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("embedded: lock %s: %w", path, err)
	}
	if busy {
		h := readHolder(f)
		_ = f.Close()
		return nil, &LockedError{Dir: dir, Holder: h}
	}
	l := &DirLock{dir: dir, f: f, holder: Holder{PID: os.Getpid(), Started: time.Now().UTC().Truncate(time.Second), Listen: map[string]string{}}}
	for k, v := range listen {
		l.holder.Listen[k] = v
	}
	if err := l.write(); err != nil {
		l.Release()
		return nil, err
	}
	if err := checkWritable(dir); err != nil {
		l.Release()
		return nil, err
	}
	// nats-server keeps its streams in dir/jetstream: a file there, or a
	// directory that cannot be written, is refused here with its cause
	// (nats-server's own check says only "not writable").
	if fi, err := os.Stat(filepath.Join(dir, jetStreamDir)); err == nil {
		if !fi.IsDir() {
			l.Release()
			return nil, fmt.Errorf("embedded: %s is not a directory: it is where JetStream keeps its streams", filepath.Join(dir, jetStreamDir))
		}
		if err := checkWritable(filepath.Join(dir, jetStreamDir)); err != nil {
			l.Release()
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		l.Release()
		return nil, fmt.Errorf("embedded: data dir: %w", err)
	}
	return l, nil
}

// jetStreamDir is where, under its store dir, nats-server keeps JetStream.
const jetStreamDir = "jetstream"

// Dir is the locked directory.
func (l *DirLock) Dir() string { return l.dir }

// setListen adds a listener to what the lock file says of its holder.
func (l *DirLock) setListen(name, addr string) error {
	l.mu.Lock()
	l.holder.Listen[name] = addr
	l.mu.Unlock()
	return l.write()
}

// write replaces the lock file's contents with the holder.
func (l *DirLock) write() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	b, err := json.Marshal(l.holder)
	if err != nil {
		return fmt.Errorf("embedded: lock file: %w", err)
	}
	b = append(b, '\n')
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("embedded: data dir %s is not writable: %w", l.dir, err)
	}
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("embedded: data dir %s is not writable: %w", l.dir, err)
	}
	return nil
}

// Release empties the lock file and drops the lock; the file stays, so
// that no other process can be locking a file about to be removed.
// Releasing again does nothing.
func (l *DirLock) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = unlockFile(l.f)
	_ = l.f.Close()
	l.f = nil
}

// readHolder reads what the holder wrote; nil when it has written nothing
// readable yet.
func readHolder(f *os.File) *Holder {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<10))
	if err != nil {
		return nil
	}
	var h Holder
	if json.Unmarshal(b, &h) != nil || h.PID == 0 {
		return nil
	}
	return &h
}

// checkWritable creates and removes a file in dir.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".jetway-write-check-*")
	if err != nil {
		return fmt.Errorf("embedded: data dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	err = f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("embedded: data dir %s is not writable: %w", dir, err)
	}
	return nil
}
