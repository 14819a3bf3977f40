package methods

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Background processes for the QEMU guest agent dialect's guest-exec: the
// program is resolved and checked by the same command policy as
// exec_command (whitelist, fixed system PATH), runs in a container of its
// own as exec_command's do (a cgroup, or the subreaper's bookkeeping) with
// exec_command's environment, and is killed with everything it started
// after command_timeout_seconds; what it leaves behind when it exits is
// killed too. Its output is kept up to max_output_bytes per stream.

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
	PID    int
	done   chan struct{}
	stdout *outputPipe // nil when not captured
	stderr *outputPipe // nil when not captured (or merged into stdout)
	// Set before done is closed.
	state   *os.ProcessState
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
	cmd := exec.Command(path, spec.Args...)
	cmd.Args[0] = spec.Path
	cmd.Env = append(append([]string{}, childEnv...), spec.Env...)
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	p := &Process{done: make(chan struct{})}
	closePipes := func() {
		for _, o := range []*outputPipe{p.stdout, p.stderr} {
			if o != nil {
				o.close()
			}
		}
	}
	if spec.CaptureStdout || spec.MergeOutput {
		if p.stdout, err = newOutputPipe(s.cfg.MaxOutputBytes); err != nil {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", spec.Path, err)
		}
		cmd.Stdout = p.stdout.w
		if spec.MergeOutput {
			cmd.Stderr = p.stdout.w
		}
	}
	if spec.CaptureStderr && !spec.MergeOutput {
		if p.stderr, err = newOutputPipe(s.cfg.MaxOutputBytes); err != nil {
			closePipes()
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", spec.Path, err)
		}
		cmd.Stderr = p.stderr.w
	}
	box, err := startContained(cmd, s.log)
	if err != nil {
		closePipes()
		return nil, startError(spec.Path, path, err)
	}
	for _, o := range []*outputPipe{p.stdout, p.stderr} {
		if o != nil {
			o.start()
		}
	}
	p.PID = cmd.Process.Pid
	timeout := time.Duration(s.cfg.CommandTimeoutSeconds) * time.Second
	s.log.Debug("guest-exec started", "command", path, "args", len(spec.Args), "pid", p.PID, "timeout", timeout)
	go func() {
		defer close(p.done)
		defer box.release()
		defer closePipes()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-waited:
		case <-timer.C:
			p.timeout = true
			box.kill(false)
			<-waited
		}
		// What it left behind goes now; then its pipes close.
		box.kill(true)
		drain := time.NewTimer(pipeDrainDelay)
		defer drain.Stop()
		for _, o := range []*outputPipe{p.stdout, p.stderr} {
			if o != nil {
				o.wait(drain.C)
			}
		}
		p.state = cmd.ProcessState
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
	if p.state != nil {
		if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sig := int(ws.Signal())
			st.Signal = &sig
		} else {
			code := p.state.ExitCode()
			st.ExitCode = &code
		}
	}
	if p.stdout != nil {
		st.StdoutCaptured = true
		st.Stdout, st.StdoutTruncated = p.stdout.buf.bytes()
	}
	if p.stderr != nil {
		st.StderrCaptured = true
		st.Stderr, st.StderrTruncated = p.stderr.buf.bytes()
	}
	return st
}

// bytes returns the output as it came (no UTF-8 repair: guest-exec sends
// it in base64) and whether bytes were dropped.
func (b *cappedBuffer) bytes() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf, b.truncated
}
