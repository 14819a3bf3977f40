//go:build !windows

package qga

import (
	"context"
	"encoding/base64"
	"errors"

	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// MaxPendingExec bounds the guest-exec processes whose status has not been
// collected yet (running, or exited and not yet reported by
// guest-exec-status): the background command table shared with protocol
// 1.1's exec_start (methods.MaxBackgroundCommands, for both dialects). A
// result nobody collected for methods.BackgroundResultRetention after its
// exit is dropped when room is needed.
const MaxPendingExec = methods.MaxBackgroundCommands

// execCommands: guest-exec and guest-exec-status, thin over the methods
// package's background commands (one implementation with exec_start). The
// table of processes is the agent's, not a session's: a host that
// reconnects (libvirtd restarted) still collects its results.
func (d *Dialect) execCommands() []Command {
	return []Command{
		{Name: qapi.CmdExec, Handler: Typed(d.exec), Method: protocol.MethodExecCommand},
		{Name: qapi.CmdExecStatus, Handler: Typed(d.execStatus), Method: protocol.MethodExecCommand},
	}
}

func (d *Dialect) exec(_ context.Context, a *qapi.GuestExecArgs) (qapi.GuestExec, error) {
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
	j, err := d.svc.StartJob(methods.OwnerQGA, spec)
	var full *methods.TableFullError
	if errors.As(err, &full) {
		return qapi.GuestExec{}, Errorf("%d guest-exec results are pending: collect them with guest-exec-status first", MaxPendingExec)
	}
	if err != nil {
		return qapi.GuestExec{}, err
	}
	pid := j.ID
	return qapi.GuestExec{PID: pid}, nil
}

// execStatus reports a process; once it has exited the report is the last
// one (the pid is forgotten), as in qemu-ga.
func (d *Dialect) execStatus(ctx context.Context, a *qapi.GuestExecStatusArgs) (qapi.GuestExecStatus, error) {
	j := d.svc.Job(methods.OwnerQGA, a.PID)
	if j == nil {
		return qapi.GuestExecStatus{}, Errorf("Invalid parameter 'pid'")
	}
	st := j.P.Status()
	if !st.Exited {
		return qapi.GuestExecStatus{Exited: false}, nil
	}
	// The reply's base64 strings and their encoded copies.
	if err := server.Reserve(ctx, 3*int64(base64.StdEncoding.EncodedLen(len(st.Stdout)+len(st.Stderr)))); err != nil {
		return qapi.GuestExecStatus{}, err
	}
	d.svc.ForgetJob(j)
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
