//go:build !windows

package qga

import (
	"context"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// fsfreezeCommands: freeze and thaw for libvirt's quiesced snapshots, and
// fstrim. Status and thaw stay allowed while frozen (qemu-ga's freeze
// allow-list); freeze and fstrim are refused then.
func (d *Dialect) fsfreezeCommands() []Command {
	return append([]Command{
		{Name: qapi.CmdFsfreezeStatus, Handler: NoArgs(d.fsfreezeStatus), Method: protocol.MethodFsfreezeStatus},
		{Name: qapi.CmdFsfreezeThaw, Handler: NoArgs(d.fsfreezeThaw), Method: protocol.MethodFsfreezeThaw},
	}, d.unlessFrozen([]Command{
		{Name: qapi.CmdFsfreezeFreeze, Handler: NoArgs(d.fsfreezeFreeze), Method: protocol.MethodFsfreezeFreeze},
		{Name: qapi.CmdFsfreezeFreezeList, Handler: Typed(d.fsfreezeFreezeList), Method: protocol.MethodFsfreezeFreeze},
		{Name: qapi.CmdFstrim, Handler: Typed(d.fstrim)},
	})...)
}

func (d *Dialect) fsfreezeStatus(context.Context) (qapi.GuestFsfreezeStatus, error) {
	return qapi.GuestFsfreezeStatus(d.svc.FsfreezeStatus().Status), nil
}

func (d *Dialect) fsfreezeFreeze(ctx context.Context) (int64, error) {
	res, err := d.svc.FsfreezeFreeze(ctx, nil)
	return int64(res.Frozen), err
}

// fsfreezeFreezeList: without mountpoints, every file system; an empty
// list freezes none.
func (d *Dialect) fsfreezeFreezeList(ctx context.Context, a *qapi.GuestFsfreezeFreezeListArgs) (int64, error) {
	res, err := d.svc.FsfreezeFreeze(ctx, a.Mountpoints)
	return int64(res.Frozen), err
}

func (d *Dialect) fsfreezeThaw(ctx context.Context) (int64, error) {
	n, err := d.svc.FsfreezeThaw(ctx)
	return int64(n), err
}

// fstrim passes a negative minimum on as the kernel's unsigned value, as
// qemu-ga does (the kernel then answers EINVAL per file system).
func (d *Dialect) fstrim(ctx context.Context, a *qapi.GuestFstrimArgs) (qapi.GuestFilesystemTrimResponse, error) {
	var minimum uint64
	if a.Minimum != nil {
		minimum = uint64(*a.Minimum)
	}
	paths, err := d.svc.Fstrim(ctx, minimum)
	if err != nil {
		return qapi.GuestFilesystemTrimResponse{}, err
	}
	out := qapi.GuestFilesystemTrimResponse{Paths: make([]qapi.GuestFilesystemTrimResult, 0, len(paths))}
	for _, p := range paths {
		r := qapi.GuestFilesystemTrimResult{Path: p.Path, Error: p.Error}
		if p.Trimmed != nil {
			r.Trimmed = ptrInt64(int64(*p.Trimmed))
		}
		if p.Minimum != nil {
			r.Minimum = ptrInt64(int64(*p.Minimum))
		}
		out.Paths = append(out.Paths, r)
	}
	return out, nil
}

func ptrInt64(v int64) *int64 { return &v }
