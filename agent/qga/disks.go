//go:build !windows

package qga

import (
	"context"
	"slices"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// diskCommands: guest-get-disks and guest-get-fsinfo (libvirt's
// guestinfo --disk/--filesystem and domfsinfo).
func (d *Dialect) diskCommands() []Command {
	return []Command{
		{Name: qapi.CmdGetFsinfo, Handler: NoArgs(d.getFsinfo), Method: protocol.MethodGetDiskUsage},
		{Name: qapi.CmdGetDisks, Handler: NoArgs(d.getDisks), Method: protocol.MethodGetDiskUsage},
	}
}

func diskAddress(a protocol.DiskAddress) qapi.GuestDiskAddress {
	return qapi.GuestDiskAddress{
		PCIController: qapi.GuestPCIAddress{
			Domain: int64(a.PCIController.Domain), Bus: int64(a.PCIController.Bus),
			Slot: int64(a.PCIController.Slot), Function: int64(a.PCIController.Function),
		},
		BusType: qapi.GuestDiskBusType(a.BusType),
		Bus:     int64(a.Bus), Target: int64(a.Target), Unit: int64(a.Unit),
		Serial: a.Serial, Dev: a.Dev,
	}
}

func (d *Dialect) getDisks(context.Context) ([]qapi.GuestDiskInfo, error) {
	disks, err := d.svc.Disks()
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestDiskInfo, 0, len(disks))
	for _, x := range disks {
		di := qapi.GuestDiskInfo{Name: x.Name, Partition: x.Partition, Dependencies: x.Dependencies, Alias: x.Alias}
		if x.Address != nil {
			a := diskAddress(*x.Address)
			di.Address = &a
		}
		out = append(out, di)
	}
	return out, nil
}

func (d *Dialect) getFsinfo(ctx context.Context) ([]qapi.GuestFilesystemInfo, error) {
	fss, err := d.svc.FSInfo(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestFilesystemInfo, 0, len(fss))
	for _, f := range fss {
		fi := qapi.GuestFilesystemInfo{Name: f.Name, Mountpoint: f.Mountpoint, Type: f.Type,
			UsedBytes: f.UsedBytes, TotalBytes: f.TotalBytes, Disk: make([]qapi.GuestDiskAddress, 0, len(f.Disks))}
		for _, a := range f.Disks {
			fi.Disk = append(fi.Disk, diskAddress(a))
		}
		out = append(out, fi)
	}
	// qemu-ga lists the last mounted first (it prepends each file system
	// to its list as it walks the mount table).
	slices.Reverse(out)
	return out, nil
}
