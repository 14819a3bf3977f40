//go:build unix

package filelock

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLockWaitsForHolder: a second Lock of one file returns only after the
// first holder unlocks (flock locks belong to the open file, so two opens in
// one process exclude each other as two processes do).
func TestLockWaitsForHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		u, err := Lock(path)
		if err != nil {
			t.Error(err)
			u = func() {}
		}
		got <- u
	}()
	select {
	case u := <-got:
		u()
		t.Fatal("a second Lock returned while the first was held")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case u := <-got:
		u()
	case <-time.After(10 * time.Second):
		t.Fatal("the second Lock did not return after the first was released")
	}
}

func TestLockBadPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "x.lock")
	if _, err := Lock(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Lock(%s) in a missing directory = %v, want an error naming the path", path, err)
	}
}
