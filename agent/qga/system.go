//go:build !windows

package qga

import (
	"context"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// systemCommands: what the guest is (os-release, uname, host name, vCPUs).
func (d *Dialect) systemCommands() []Command {
	return []Command{
		{Name: qapi.CmdGetOSInfo, Handler: NoArgs(d.osInfo), Method: protocol.MethodGetSystemInfo},
		{Name: qapi.CmdGetHostName, Handler: NoArgs(d.hostName), Method: protocol.MethodGetSystemInfo},
		{Name: qapi.CmdGetVcpus, Handler: NoArgs(d.vcpus), Method: protocol.MethodGetSystemInfo},
	}
}

// osInfo: uname(2) and os-release(5), members absent when unknown.
func (d *Dialect) osInfo(context.Context) (qapi.GuestOSInfo, error) {
	u, err := d.svc.Kernel()
	if err != nil {
		return qapi.GuestOSInfo{}, err
	}
	kv := d.svc.OSReleaseFields()
	return qapi.GuestOSInfo{
		KernelRelease: u.Release,
		KernelVersion: u.Version,
		Machine:       u.Machine,
		ID:            kv["ID"],
		Name:          kv["NAME"],
		PrettyName:    kv["PRETTY_NAME"],
		Version:       kv["VERSION"],
		VersionID:     kv["VERSION_ID"],
		Variant:       kv["VARIANT"],
		VariantID:     kv["VARIANT_ID"],
	}, nil
}

func (d *Dialect) hostName(context.Context) (qapi.GuestHostName, error) {
	u, err := d.svc.Kernel()
	if err != nil {
		return qapi.GuestHostName{}, err
	}
	return qapi.GuestHostName{HostName: u.NodeName}, nil
}

func (d *Dialect) vcpus(context.Context) ([]qapi.GuestLogicalProcessor, error) {
	cpus, err := d.svc.VCPUs()
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestLogicalProcessor, 0, len(cpus))
	for _, c := range cpus {
		out = append(out, qapi.GuestLogicalProcessor{LogicalID: int64(c.ID), Online: c.Online, CanOffline: &c.CanOffline})
	}
	return out, nil
}
