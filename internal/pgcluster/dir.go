package pgcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// A cluster's directory is base/klozd-pg-*, holding owner.lock, which the
// creating process keeps open and locked (flock) until Stop. The kernel drops
// the lock when that process dies however it dies (panic, -timeout, SIGKILL),
// which is when Stop never runs; the next Start under the same base then
// removes the directory.
const (
	dirPrefix = "klozd-pg-"
	ownerLock = "owner.lock"
)

// newDir creates a cluster directory under base and returns it with its
// locked owner.lock, which the caller keeps open for as long as the
// directory is in use.
func newDir(base string) (string, *os.File, error) {
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("pgcluster: temp dir: %w", err)
	}
	lock, err := lockOwner(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("pgcluster: lock %s: %w", dir, err)
	}
	return dir, lock, nil
}

// lockOwner creates dir/owner.lock already locked: the file is created and
// locked under another name and then renamed, so that removeStale never sees
// an owner.lock that is not yet locked.
func lockOwner(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".owner-")
	if err != nil {
		return nil, err
	}
	if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		// The pid is for people looking at the directory; the lock decides.
		if _, err = fmt.Fprintf(f, "%d\n", os.Getpid()); err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, ownerLock))
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// removeStale removes the cluster directories under base whose owner has
// died and whose server is not running. It keeps a directory whose owner
// still holds its lock, one without owner.lock (being created, or made by a
// version that did not write one), and one whose postmaster.pid names a live
// process (the server of a dead owner may still be shutting down). Errors
// leave a directory in place.
func removeStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, dir := range dirs {
		f, err := os.Open(filepath.Join(dir, ownerLock))
		if err != nil {
			continue
		}
		// Held while removing, so that no one else removes it at the same time.
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil && !serverMayRun(dir) {
			_ = os.RemoveAll(dir)
		}
		_ = f.Close()
	}
}

// serverMayRun reports whether the server of the cluster directory dir may
// be running: its postmaster.pid names a live process or cannot be read.
func serverMayRun(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid <= 0 {
		return true
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
