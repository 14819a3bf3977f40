package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvmmanager/guest-agent/build/filelock"
)

// lockDist takes an exclusive lock on dist (dist/.lock), waiting for any
// other pipeline run (another mage process, or tests of several packages run
// in parallel by go test) that builds into the same directory. The returned
// function releases it. Where there is no flock(2), concurrent runs into one
// directory are the caller's to avoid.
func lockDist(dist string) (func(), error) {
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dist, err)
	}
	unlock, err := filelock.Lock(filepath.Join(dist, ".lock"))
	if errors.Is(err, errors.ErrUnsupported) {
		return func() {}, nil
	}
	return unlock, err
}
