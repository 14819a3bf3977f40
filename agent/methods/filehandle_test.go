//go:build !windows

package methods

import (
	"errors"
	"io"
	"os"
	"testing"
)

// ReadNoWait never waits: on a pipe (pollable, like /proc/kmsg) with no data
// it fails at once instead of parking in the poller.
func TestReadNoWait(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 4)
	if n, err := ReadNoWait(r, buf); n != 0 || !errors.Is(err, ErrNoData) {
		t.Errorf("empty pipe: %d, %v; want 0, ErrNoData", n, err)
	}
	w.Write([]byte("ab"))
	if n, err := ReadNoWait(r, buf); n != 2 || !errors.Is(err, ErrNoData) || string(buf[:2]) != "ab" {
		t.Errorf("2 bytes: %d %q, %v", n, buf[:n], err)
	}
	w.Write([]byte("cdefg"))
	if n, err := ReadNoWait(r, buf); n != 4 || err != nil || string(buf) != "cdef" {
		t.Errorf("full buffer: %d %q, %v", n, buf[:n], err)
	}
	w.Close()
	if n, err := ReadNoWait(r, buf); n != 1 || !errors.Is(err, io.EOF) {
		t.Errorf("at end: %d, %v; want 1, EOF", n, err)
	}
}
