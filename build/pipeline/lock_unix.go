//go:build unix

package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDist takes an exclusive lock on dist (dist/.lock), waiting for any
// other pipeline run (another mage process, or tests of several packages run
// in parallel by go test) that builds into the same directory. The returned
// function releases it.
func lockDist(dist string) (func(), error) {
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dist, err)
	}
	path := filepath.Join(dist, ".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
