package server

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// defaultSpoolDir is on disk on common Linux systems (/tmp is often a
// tmpfs, which would hold the spool in RAM).
const defaultSpoolDir = "/var/tmp"

// createSpoolFile creates an unnamed file in dir (O_TMPFILE, mode 0600):
// no other process can open it, and it is gone once closed. File systems
// without O_TMPFILE get a random name, removed at once.
func createSpoolFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = defaultSpoolDir
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(spool)"), nil
	}
	f, cerr := os.CreateTemp(dir, ".kvmmanager-spool-*")
	if cerr != nil {
		return nil, fmt.Errorf("create spool in %s: %w", dir, err)
	}
	if rerr := os.Remove(f.Name()); rerr != nil {
		f.Close()
		return nil, fmt.Errorf("unlink spool %s: %w", f.Name(), rerr)
	}
	return f, nil
}

func closeSpoolFile(f *os.File) error { return f.Close() }
