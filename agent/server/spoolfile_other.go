//go:build !linux

package server

import (
	"fmt"
	"os"
)

const defaultSpoolDir = ""

// createSpoolFile creates a temporary file (mode 0600) in dir or the
// system's temporary directory; closeSpoolFile removes it.
func createSpoolFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".kvmmanager-spool-*")
	if err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	return f, nil
}

func closeSpoolFile(f *os.File) error {
	err := f.Close()
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}
