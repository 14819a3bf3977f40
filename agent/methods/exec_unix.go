//go:build !windows

package methods

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

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

// workingDir checks the working_directory of a command: absolute, an
// existing directory, looked at within the file deadline (a working
// directory on a hung file system must not hold the request, and its slot,
// for ever). It returns the directory to run in.
func (s *Service) workingDir(ctx context.Context, wd string) (string, error) {
	if !filepath.IsAbs(wd) {
		return "", invalidParams("working_directory %q is not absolute", wd)
	}
	v, err := s.withFileDeadline(ctx, func() (any, error) { return os.Stat(wd) })
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return "", pe
	}
	fi, _ := v.(fs.FileInfo)
	return wd, workingDirError(wd, fi, err)
}

// run runs the resolved command path and returns its protocol result. Every
// process it starts lives in a container of its own (a cgroup, or on guests
// without one, the agent's subreaper bookkeeping: see startContained) that is
// killed whole when the command times out, is cancelled, or exits: nothing
// a command started outlives it. Hosts that want a daemon to stay use
// systemd-run.
func (s *Service) run(ctx context.Context, path string, p protocol.ExecParams, timeout time.Duration, capture bool) (any, error) {
	cmd := exec.Command(path, p.Args...)
	cmd.Args[0] = p.Command // what the caller named, as a shell would pass it
	cmd.Env = childEnv
	cmd.Dir = p.WorkingDirectory
	cmd.Stdin = nil // /dev/null
	var stdout, stderr *outputPipe
	if capture {
		var err error
		if stdout, err = newOutputPipe(s.cfg.MaxOutputBytes); err != nil {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
		}
		defer stdout.close()
		if stderr, err = newOutputPipe(s.cfg.MaxOutputBytes); err != nil {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
		}
		defer stderr.close()
		cmd.Stdout, cmd.Stderr = stdout.w, stderr.w
	}

	start := time.Now()
	box, err := startContained(cmd, s.log)
	if err != nil {
		return nil, startError(p.Command, path, err)
	}
	defer box.release()
	if capture {
		stdout.start()
		stderr.start()
	}
	s.log.Debug("exec_command started", "command", path, "args", len(p.Args), "pid", cmd.Process.Pid, "timeout", timeout)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var waitErr error
	timedOut, cancelled := false, false
	select {
	case waitErr = <-waited:
	case <-timer.C:
		timedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if timedOut || cancelled {
		box.kill(false)
		waitErr = <-waited
	}
	// Whatever the command left behind (background children, setsid
	// daemons) goes now; then the pipes close and the output is complete.
	box.kill(true)
	res := protocol.ExecResult{
		ExitCode:        exitCode(cmd.ProcessState),
		ExecutionTimeMS: time.Since(start).Milliseconds(),
	}
	if capture {
		drain := time.NewTimer(pipeDrainDelay)
		defer drain.Stop()
		stdout.wait(drain.C)
		stderr.wait(drain.C)
		res.Stdout, res.StdoutTruncated = stdout.buf.result()
		res.Stderr, res.StderrTruncated = stderr.buf.result()
	}
	if timedOut {
		return nil, protocol.Errorf(protocol.CodeTimeout,
			"command %q timed out after %v; it and every process it started were killed", p.Command, timeout).WithData(res)
	}
	if cancelled {
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "command %q cancelled: %v; it and every process it started were killed", p.Command, ctx.Err())
	}
	if waitErr != nil {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "wait for %q: %v", p.Command, waitErr)
		}
	}
	return res, nil
}

// container holds the processes of one command (OS-specific).
type container interface {
	// kill ends every process of the command still running. reaped says
	// whether the command's own process was already waited for (its pid
	// may then belong to another process).
	kill(reaped bool)
	// release frees the container; kill was called before.
	release()
}

// outputPipe collects one output stream of a command.
type outputPipe struct {
	r, w *os.File
	buf  *cappedBuffer
	done chan struct{}
}

func newOutputPipe(max int) (*outputPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &outputPipe{r: r, w: w, buf: newCappedBuffer(max), done: make(chan struct{})}, nil
}

// start closes the agent's copy of the write end (the command has its own)
// and reads until every writer is gone.
func (o *outputPipe) start() {
	o.w.Close()
	o.w = nil
	go func() {
		defer close(o.done)
		_, _ = io.Copy(o.buf, o.r)
	}()
}

// wait waits for the end of the output, or gives up when deadline fires
// (a process outside the container holds the pipe) and closes the pipe.
func (o *outputPipe) wait(deadline <-chan time.Time) {
	select {
	case <-o.done:
	case <-deadline:
		o.r.Close()
		<-o.done
	}
}

func (o *outputPipe) close() {
	if o.w != nil {
		o.w.Close()
	}
	o.r.Close()
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
