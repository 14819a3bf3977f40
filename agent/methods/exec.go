//go:build !windows

package methods

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// defaultExecTimeout is exec_command's timeout_seconds when absent.
const defaultExecTimeout = 30

// pipeDrainDelay is how long exec_command waits, once the command has
// exited, for its output pipes to close. Background processes it left behind
// may hold them open forever; after this delay the pipes are closed and the
// reply is sent with the output read so far.
const pipeDrainDelay = 2 * time.Second

// childEnv is the whole environment of every command: nothing of the agent's
// own environment (JOURNAL_STREAM, NOTIFY_SOCKET, ...) and nothing from the
// request. LANG=C gives stable, untranslated messages on every distribution
// (C.UTF-8 does not exist everywhere).
var childEnv = []string{
	"PATH=" + policy.SystemPATH,
	"HOME=/root",
	"LANG=C",
	"SHELL=/bin/sh",
}

// exec_command: run a program (never through a shell) with a timeout, its
// stdin on /dev/null and its output captured up to max_output_bytes per
// stream.
func (s *Service) execCommand(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.ExecParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Command == "" {
		return nil, invalidParams(`"command" is required`)
	}
	timeout := defaultExecTimeout
	if p.TimeoutSeconds != nil {
		if *p.TimeoutSeconds < 1 {
			return nil, invalidParams(`"timeout_seconds" must be at least 1, got %d`, *p.TimeoutSeconds)
		}
		timeout = *p.TimeoutSeconds
	}
	timeout = min(timeout, s.cfg.CommandTimeoutSeconds)
	capture := p.CaptureOutput == nil || *p.CaptureOutput
	for i, a := range p.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, invalidParams("args[%d] contains a NUL byte", i)
		}
	}
	if wd := p.WorkingDirectory; wd != "" {
		if !filepath.IsAbs(wd) {
			return nil, invalidParams("working_directory %q is not absolute", wd)
		}
		fi, err := os.Stat(wd)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, protocol.Errorf(protocol.CodeNotFound, "working_directory %q does not exist", wd)
		case err != nil:
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "working_directory: %v", err)
		case !fi.IsDir():
			return nil, invalidParams("working_directory %q is not a directory", wd)
		}
	}
	path, err := s.commands.Resolve(p.Command)
	if err != nil {
		return nil, commandError(err)
	}
	return s.run(ctx, path, p, time.Duration(timeout)*time.Second, capture)
}

func commandError(err error) error {
	switch {
	case errors.Is(err, policy.ErrBadCommand):
		return invalidParams("%v", err)
	case errors.Is(err, policy.ErrNotWhitelisted):
		return protocol.Errorf(protocol.CodePermissionDenied, "%v", err)
	case errors.Is(err, policy.ErrNotExecutable):
		return protocol.Errorf(protocol.CodePermissionDenied, "%v", err)
	case errors.Is(err, policy.ErrCommandNotFound):
		return protocol.Errorf(protocol.CodeNotFound, "%v", err)
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "%v", err)
}

func (s *Service) run(ctx context.Context, path string, p protocol.ExecParams, timeout time.Duration, capture bool) (any, error) {
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(runCtx, path, p.Args...)
	cmd.Args[0] = p.Command // what the caller named, as a shell would pass it
	cmd.Env = childEnv
	cmd.Dir = p.WorkingDirectory
	cmd.Stdin = nil // /dev/null
	cmd.WaitDelay = pipeDrainDelay
	setProcessGroup(cmd)
	var stdout, stderr *cappedBuffer
	if capture {
		stdout = newCappedBuffer(s.cfg.MaxOutputBytes)
		stderr = newCappedBuffer(s.cfg.MaxOutputBytes)
		cmd.Stdout, cmd.Stderr = stdout, stderr
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, startError(p.Command, path, err)
	}
	s.log.Debug("exec_command started", "command", path, "args", len(p.Args), "pid", cmd.Process.Pid, "timeout", timeout)
	waitErr := cmd.Wait()
	res := protocol.ExecResult{
		ExitCode:        exitCode(cmd.ProcessState),
		ExecutionTimeMS: time.Since(start).Milliseconds(),
	}
	if capture {
		res.Stdout, res.StdoutTruncated = stdout.result()
		res.Stderr, res.StderrTruncated = stderr.result()
	}
	if errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, protocol.Errorf(protocol.CodeTimeout,
			"command %q timed out after %v; its process group was killed", p.Command, timeout).WithData(res)
	}
	if err := ctx.Err(); err != nil {
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "command %q cancelled: %v; its process group was killed", p.Command, err)
	}
	if waitErr != nil {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) && !errors.Is(waitErr, exec.ErrWaitDelay) {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "wait for %q: %v", p.Command, waitErr)
		}
		if errors.Is(waitErr, exec.ErrWaitDelay) {
			s.log.Debug("exec_command: output pipes still open after exit (background process?); closed them", "command", path)
		}
	}
	return res, nil
}

func startError(command, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// The file vanished, or its interpreter (#! line, ELF loader) is missing.
		return protocol.Errorf(protocol.CodeNotFound, "start %q (%s): %v", command, path, err)
	case errors.Is(err, fs.ErrPermission):
		return protocol.Errorf(protocol.CodePermissionDenied, "start %q (%s): %v", command, path, err)
	case errors.Is(err, syscall.ENOEXEC):
		return protocol.Errorf(protocol.CodeCommandFailed, "start %q (%s): not a valid executable: %v", command, path, err)
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "start %q (%s): %v", command, path, err)
}

// exitCode is the command's exit status; a command killed by a signal gets
// 128+signal, as shells report it (SIGKILL: 137).
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// cappedBuffer keeps the first max bytes written to it and counts the rest
// away, so that a command writing without end neither blocks on a full pipe
// nor grows the agent's memory.
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func newCappedBuffer(max int) *cappedBuffer {
	return &cappedBuffer{max: max}
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
	} else {
		if room > 0 {
			b.buf = append(b.buf, p[:room]...)
		}
		b.truncated = true
	}
	return len(p), nil
}

// result returns the output as valid UTF-8 (invalid sequences become
// U+FFFD) and whether bytes were dropped.
func (b *cappedBuffer) result() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.ToValidUTF8(string(b.buf), "\uFFFD"), b.truncated
}
