package methods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Background processes for the QEMU guest agent dialect's guest-exec: the
// program is resolved and checked by the same command policy as
// exec_command (whitelist, fixed system PATH), runs in a process group of
// its own with exec_command's environment, and is killed with its whole
// tree after command_timeout_seconds. Its output is kept up to
// max_output_bytes per stream.

// ProcessSpec describes a program to start.
type ProcessSpec struct {
	// Path is a bare command name (found in the system PATH) or an
	// absolute path.
	Path string
	Args []string
	// Env entries (NAME=value) are added to the fixed environment. They
	// are refused while the command whitelist is enabled: LD_PRELOAD and
	// the like would run other code than the whitelisted program.
	Env []string
	// Stdin is written to the program's standard input, then closed; nil
	// means /dev/null.
	Stdin []byte
	// CaptureStdout and CaptureStderr keep the streams; MergeOutput sends
	// stderr into stdout's buffer. Streams not captured go to /dev/null.
	CaptureStdout, CaptureStderr, MergeOutput bool
}

// Process is a started program.
type Process struct {
	PID     int
	started time.Time
	done    chan struct{}
	stdout  *capWriter
	stderr  *capWriter
	state   *syscall.WaitStatus // set before done is closed
	timeout bool
}

// ProcessStatus is a Process's state.
type ProcessStatus struct {
	Exited bool
	// ExitCode is set when the program exited normally, Signal when a
	// signal killed it (SIGKILL after the timeout).
	ExitCode, Signal *int
	// TimedOut reports a kill after command_timeout_seconds.
	TimedOut                         bool
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
	// StdoutCaptured and StderrCaptured say which streams were kept.
	StdoutCaptured, StderrCaptured bool
}

// StartProcess starts spec in the background.
func (s *Service) StartProcess(spec ProcessSpec) (*Process, error) {
	if spec.Path == "" {
		return nil, invalidParams(`"path" is empty`)
	}
	for i, a := range spec.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, invalidParams("arg[%d] contains a NUL byte", i)
		}
	}
	if len(spec.Env) > 0 && s.cfg.CommandWhitelistEnabled {
		return nil, protocol.Errorf(protocol.CodePermissionDenied,
			"env is refused while command_whitelist_enabled is true (it could change what a whitelisted program runs)")
	}
	for i, e := range spec.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return nil, invalidParams("env[%d] %q is not NAME=value", i, e)
		}
	}
	path, err := s.commands.Resolve(spec.Path)
	if err != nil {
		return nil, commandError(err)
	}
	timeout := time.Duration(s.cfg.CommandTimeoutSeconds) * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, path, spec.Args...)
	cmd.Args[0] = spec.Path
	cmd.Env = append(append([]string{}, childEnv...), spec.Env...)
	cmd.WaitDelay = pipeDrainDelay
	setProcessGroup(cmd)
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	p := &Process{started: time.Now(), done: make(chan struct{})}
	if spec.CaptureStdout || spec.MergeOutput {
		p.stdout = &capWriter{max: s.cfg.MaxOutputBytes}
		cmd.Stdout = p.stdout
	}
	if spec.MergeOutput {
		cmd.Stderr = p.stdout
	} else if spec.CaptureStderr {
		p.stderr = &capWriter{max: s.cfg.MaxOutputBytes}
		cmd.Stderr = p.stderr
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, startError(spec.Path, path, err)
	}
	p.PID = cmd.Process.Pid
	s.log.Debug("guest-exec started", "command", path, "args", len(spec.Args), "pid", p.PID, "timeout", timeout)
	go func() {
		defer cancel()
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			p.state = &ws
		}
		p.timeout = errors.Is(ctx.Err(), context.DeadlineExceeded)
		if err != nil && errors.Is(err, exec.ErrWaitDelay) {
			s.log.Debug("guest-exec: output pipes still open after exit (background process?); closed them", "pid", p.PID)
		}
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the program has exited and its output is complete.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status returns the program's state now.
func (p *Process) Status() ProcessStatus {
	select {
	case <-p.done:
	default:
		return ProcessStatus{}
	}
	st := ProcessStatus{Exited: true, TimedOut: p.timeout}
	if ws := p.state; ws != nil {
		if ws.Signaled() {
			sig := int(ws.Signal())
			st.Signal = &sig
		} else {
			code := ws.ExitStatus()
			st.ExitCode = &code
		}
	}
	if p.stdout != nil {
		st.StdoutCaptured = true
		st.Stdout, st.StdoutTruncated = p.stdout.buf, p.stdout.truncated
	}
	if p.stderr != nil {
		st.StderrCaptured = true
		st.Stderr, st.StderrTruncated = p.stderr.buf, p.stderr.truncated
	}
	return st
}

// Kill kills the program's tree if it is still running.
func (p *Process) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := killTree(p.PID); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", p.PID, err)
	}
	return nil
}

// capWriter keeps the first max bytes written to it and drops the rest, so
// that a program writing without end neither blocks nor grows the agent.
type capWriter struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.max - len(w.buf)
	if room >= len(p) {
		w.buf = append(w.buf, p...)
	} else {
		w.buf = append(w.buf, p[:max(room, 0)]...)
		w.truncated = true
	}
	return len(p), nil
}
