package libvirt

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Shell is the host end of the guest's test shell (guest/kvmtest-shell.sh)
// on the virtio-serial port org.kvmtest.shell.0: the test's view of the
// guest, independent of the agents under test.
type Shell struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	next int
}

// DialShell connects to the socket QEMU listens on for the shell's port,
// waiting up to ctx's deadline for QEMU to create it.
func DialShell(ctx context.Context, socket string) (*Shell, error) {
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", socket)
		if err == nil {
			return &Shell{conn: conn, r: bufio.NewReaderSize(conn, 1<<20)}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to the test shell %s: %w", socket, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close closes the connection.
func (s *Shell) Close() error { return s.conn.Close() }

// ShellResult is what a script printed (stdout and stderr) and its exit code.
type ShellResult struct {
	Output string
	Code   int
}

// errNoAnswer is a request that got no answer in time (the guest is
// booting, or the shell restarts): the caller may send it again.
var errNoAnswer = errors.New("no answer from the test shell")

// Run runs script under bash in the guest and waits up to d for its answer.
func (s *Shell) Run(script string, d time.Duration) (ShellResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	id := strconv.Itoa(s.next)
	deadline := time.Now().Add(d)
	if err := s.conn.SetDeadline(deadline); err != nil {
		return ShellResult{}, err
	}
	req := id + " " + base64.StdEncoding.EncodeToString([]byte(script)) + "\n"
	if _, err := s.conn.Write([]byte(req)); err != nil {
		return ShellResult{}, fmt.Errorf("test shell: send: %w", err)
	}
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return ShellResult{}, fmt.Errorf("%w after %s (script %q)", errNoAnswer, d, firstLine(script))
			}
			return ShellResult{}, fmt.Errorf("test shell: read: %w", err)
		}
		f := strings.Fields(line)
		// Answers to earlier requests that timed out are skipped.
		if len(f) < 3 || f[0] != "KVMTEST-SHELL" || f[1] != id {
			continue
		}
		code, err := strconv.Atoi(f[2])
		if err != nil {
			return ShellResult{}, fmt.Errorf("test shell: bad answer %q", line)
		}
		var out []byte
		if len(f) > 3 {
			if out, err = base64.StdEncoding.DecodeString(f[3]); err != nil {
				return ShellResult{}, fmt.Errorf("test shell: bad output in answer: %w", err)
			}
		}
		return ShellResult{Output: string(out), Code: code}, nil
	}
}

// Wait sends `true` until the shell answers, for at most d. Each request
// waits long for its answer: requests sent before the guest opened the port
// wait in QEMU, and a slow guest works through them one by one.
func (s *Shell) Wait(d time.Duration) error {
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		var r ShellResult
		if r, err = s.Run("true", min(30*time.Second, time.Until(deadline))); err == nil && r.Code == 0 {
			return nil
		}
		if err != nil && !errors.Is(err, errNoAnswer) {
			return err
		}
	}
	return fmt.Errorf("the test shell did not answer within %s: %v", d, err)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
