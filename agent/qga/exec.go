package qga

import (
	"context"
	"encoding/base64"
	"sync"
	"time"

	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// MaxPendingExec bounds the guest-exec processes whose status has not been
// collected yet (running, or exited and not yet reported by
// guest-exec-status). A result nobody collected for staleResult after its
// exit is dropped when room is needed.
const MaxPendingExec = 64

const staleResult = 10 * time.Minute

// execCommands: guest-exec and guest-exec-status. The table of processes is
// the dialect's, not a session's: a host that reconnects (libvirtd
// restarted) still collects its results.
func (d *Dialect) execCommands() []Command {
	return []Command{
		{Name: qapi.CmdExec, Handler: Typed(d.exec), Method: protocol.MethodExecCommand},
		{Name: qapi.CmdExecStatus, Handler: Typed(d.execStatus), Method: protocol.MethodExecCommand},
	}
}

// procTable holds the guest-exec processes by pid.
type procTable struct {
	mu    sync.Mutex
	procs map[int64]*procEntry
}

type procEntry struct {
	p      *methods.Process
	exited time.Time    // zero while running
	mem    *server.Hold // the memory budget its captured output may use, until collected
}

func (d *Dialect) exec(ctx context.Context, a *qapi.GuestExecArgs) (qapi.GuestExec, error) {
	spec := methods.ProcessSpec{Path: a.Path, Args: a.Arg, Env: a.Env}
	if a.InputData != nil {
		in, err := base64.StdEncoding.DecodeString(*a.InputData)
		if err != nil {
			return qapi.GuestExec{}, Errorf("Base64 data contains invalid characters")
		}
		if int64(len(in)) > d.svc.MaxFileSize() {
			return qapi.GuestExec{}, Errorf("input-data is %d bytes, over max_file_size_bytes (%d)", len(in), d.svc.MaxFileSize())
		}
		spec.Stdin = in
	}
	if c := a.CaptureOutput; c != nil {
		switch c.Mode {
		case qapi.CaptureSeparated:
			spec.CaptureStdout, spec.CaptureStderr = true, true
		case qapi.CaptureStdout:
			spec.CaptureStdout = true
		case qapi.CaptureStderr:
			spec.CaptureStderr = true
		case qapi.CaptureMerged:
			spec.MergeOutput = true
		}
	}
	// Captured output stays in memory until guest-exec-status collects
	// it: its bound is taken from the memory budget for that long.
	streams := int64(0)
	switch {
	case spec.MergeOutput:
		streams = 1
	case spec.CaptureStdout && spec.CaptureStderr:
		streams = 2
	case spec.CaptureStdout || spec.CaptureStderr:
		streams = 1
	}
	mem := d.opts.Budget.NewHold()
	if err := mem.Take(ctx, streams*int64(d.cfg.MaxOutputBytes)); err != nil {
		return qapi.GuestExec{}, err
	}
	t := &d.procs
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.procs) >= MaxPendingExec {
		for pid, e := range t.procs {
			if !e.exited.IsZero() && time.Since(e.exited) > staleResult {
				delete(t.procs, pid)
				e.mem.Release()
			}
		}
	}
	if len(t.procs) >= MaxPendingExec {
		mem.Release()
		return qapi.GuestExec{}, Errorf("%d guest-exec results are pending: collect them with guest-exec-status first", MaxPendingExec)
	}
	p, err := d.svc.StartProcess(spec)
	if err != nil {
		mem.Release()
		return qapi.GuestExec{}, err
	}
	e := &procEntry{p: p, mem: mem}
	pid := int64(p.PID)
	t.procs[pid] = e
	go func() {
		<-p.Done()
		t.mu.Lock()
		e.exited = time.Now()
		t.mu.Unlock()
	}()
	return qapi.GuestExec{PID: pid}, nil
}

// execStatus reports a process; once it has exited the report is the last
// one (the pid is forgotten), as in qemu-ga.
func (d *Dialect) execStatus(ctx context.Context, a *qapi.GuestExecStatusArgs) (qapi.GuestExecStatus, error) {
	t := &d.procs
	t.mu.Lock()
	e := t.procs[a.PID]
	t.mu.Unlock()
	if e == nil {
		return qapi.GuestExecStatus{}, Errorf("Invalid parameter 'pid'")
	}
	st := e.p.Status()
	if !st.Exited {
		return qapi.GuestExecStatus{Exited: false}, nil
	}
	// The reply's base64 strings and their encoded copies.
	if err := server.Reserve(ctx, 3*int64(base64.StdEncoding.EncodedLen(len(st.Stdout)+len(st.Stderr)))); err != nil {
		return qapi.GuestExecStatus{}, err
	}
	t.mu.Lock()
	delete(t.procs, a.PID)
	t.mu.Unlock()
	e.mem.Release()
	out := qapi.GuestExecStatus{Exited: true}
	if st.ExitCode != nil {
		out.Exitcode = ptrTo(int64(*st.ExitCode))
	}
	if st.Signal != nil {
		out.Signal = ptrTo(int64(*st.Signal))
	}
	if st.StdoutCaptured && (len(st.Stdout) > 0 || st.StdoutTruncated) {
		out.OutData = ptrTo(base64.StdEncoding.EncodeToString(st.Stdout))
		out.OutTruncated = ptrTo(st.StdoutTruncated)
	}
	if st.StderrCaptured && (len(st.Stderr) > 0 || st.StderrTruncated) {
		out.ErrData = ptrTo(base64.StdEncoding.EncodeToString(st.Stderr))
		out.ErrTruncated = ptrTo(st.StderrTruncated)
	}
	return out, nil
}

func ptrTo[T any](v T) *T { return &v }
