//go:build !windows

package qga

import (
	"context"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// guestInfoCommands: who is logged in, time zone, clock, load and the
// CPU and disk counters.
func (d *Dialect) guestInfoCommands() []Command {
	return []Command{
		{Name: qapi.CmdGetUsers, Handler: NoArgs(d.getUsers), Method: protocol.MethodGetUsers},
		{Name: qapi.CmdGetTimezone, Handler: NoArgs(d.getTimezone), Method: protocol.MethodGetTimezone},
		{Name: qapi.CmdGetTime, Handler: NoArgs(d.getTime), Method: protocol.MethodGetTime},
		{Name: qapi.CmdSetTime, Handler: Typed(d.setTime), Method: protocol.MethodSetTime},
		{Name: qapi.CmdGetLoad, Handler: NoArgs(d.getLoad), Method: protocol.MethodGetLoad},
		{Name: qapi.CmdGetCpustats, Handler: NoArgs(d.getCPUStats), Method: protocol.MethodGetCPUStats},
		{Name: qapi.CmdGetDiskstats, Handler: NoArgs(d.getDiskStats), Method: protocol.MethodGetDiskStats},
	}
}

func (d *Dialect) getUsers(context.Context) ([]qapi.GuestUser, error) {
	users, err := d.svc.Users()
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestUser, 0, len(users))
	for _, u := range users {
		out = append(out, qapi.GuestUser{User: u.User, LoginTime: u.LoginTime, Domain: u.Domain})
	}
	return out, nil
}

func (d *Dialect) getTimezone(context.Context) (qapi.GuestTimezone, error) {
	tz := d.svc.Timezone()
	return qapi.GuestTimezone{Zone: tz.Zone, Offset: int64(tz.Offset)}, nil
}

func (d *Dialect) getTime(context.Context) (int64, error) {
	return d.svc.GetTime().TimeNs, nil
}

// setTime returns {} as qemu-ga does; a time before the epoch gets its
// words (settimeofday's EINVAL).
func (d *Dialect) setTime(ctx context.Context, a *qapi.GuestSetTimeArgs) (struct{}, error) {
	if a.Time != nil && *a.Time < 0 {
		return struct{}{}, Errorf("Failed to set time to guest: Invalid argument")
	}
	_, err := d.svc.SetTime(ctx, a.Time)
	return struct{}{}, err
}

func (d *Dialect) getLoad(context.Context) (qapi.GuestLoadAverage, error) {
	l, err := d.svc.LoadAverage()
	if err != nil {
		return qapi.GuestLoadAverage{}, err
	}
	return qapi.GuestLoadAverage{Load1: l.Load1, Load5: l.Load5, Load15: l.Load15}, nil
}

func (d *Dialect) getCPUStats(context.Context) ([]qapi.GuestCpuStats, error) {
	cpus, err := d.svc.CPUStats()
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestCpuStats, 0, len(cpus))
	for _, c := range cpus {
		out = append(out, qapi.GuestCpuStats{Type: qapi.CPUStatsLinux, GuestLinuxCpuStats: &qapi.GuestLinuxCpuStats{
			CPU: int64(c.CPU), User: c.User, Nice: c.Nice, System: c.System, Idle: c.Idle,
			Iowait: c.Iowait, Irq: c.Irq, Softirq: c.Softirq, Steal: c.Steal, Guest: c.Guest, Guestnice: c.GuestNice,
		}})
	}
	return out, nil
}

func (d *Dialect) getDiskStats(context.Context) ([]qapi.GuestDiskStatsInfo, error) {
	disks, err := d.svc.DiskStats()
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestDiskStatsInfo, 0, len(disks))
	for _, x := range disks {
		out = append(out, qapi.GuestDiskStatsInfo{Name: x.Name, Major: x.Major, Minor: x.Minor, Stats: qapi.GuestDiskStats{
			ReadSectors: &x.ReadSectors, ReadIos: &x.ReadIOs, ReadMerges: &x.ReadMerges,
			WriteSectors: &x.WriteSectors, WriteIos: &x.WriteIOs, WriteMerges: &x.WriteMerges,
			DiscardSectors: x.DiscardSectors, DiscardIos: x.DiscardIOs, DiscardMerges: x.DiscardMerges,
			FlushIos: x.FlushIOs, ReadTicks: &x.ReadTicks, WriteTicks: &x.WriteTicks,
			DiscardTicks: x.DiscardTicks, FlushTicks: x.FlushTicks, IosPgr: &x.IOsInProgress,
			TotalTicks: &x.TotalTicks, WeightTicks: &x.WeightTicks,
		}})
	}
	return out, nil
}
