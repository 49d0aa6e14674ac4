package embedded

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockRegion is the byte range locked: one byte far past the holder's
// details, since a Windows lock is mandatory and would stop another
// process reading them.
var lockRegion = windows.Overlapped{OffsetHigh: 0x7fffffff}

// lockFile takes an exclusive LockFileEx lock on f without waiting; busy
// says another handle holds it.
func lockFile(f *os.File) (busy bool, err error) {
	ol := lockRegion
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return true, nil
	}
	return false, err
}

func unlockFile(f *os.File) error {
	ol := lockRegion
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
