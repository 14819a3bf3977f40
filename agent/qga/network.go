//go:build !windows

package qga

import (
	"context"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// networkCommands: interfaces, addresses and counters.
func (d *Dialect) networkCommands() []Command {
	return []Command{
		{Name: qapi.CmdNetworkGetInterfaces, Handler: NoArgs(d.interfaces), Method: protocol.MethodGetNetworkInfo},
	}
}

func (d *Dialect) interfaces(ctx context.Context) ([]qapi.GuestNetworkInterface, error) {
	ifs, err := d.svc.NetInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]qapi.GuestNetworkInterface, 0, len(ifs))
	for _, it := range ifs {
		gi := qapi.GuestNetworkInterface{Name: it.Name, HardwareAddress: it.MAC}
		for _, a := range it.Addrs {
			typ := qapi.IPv4
			if !a.Addr().Is4() {
				typ = qapi.IPv6
			}
			gi.IPAddresses = append(gi.IPAddresses, qapi.GuestIpAddress{
				IPAddress: a.Addr().String(), IPAddressType: typ, Prefix: int64(a.Bits()),
			})
		}
		if s := it.Stats; s != nil {
			gi.Statistics = &qapi.GuestNetworkInterfaceStat{
				RxBytes: s.RxBytes, RxPackets: s.RxPackets, RxErrs: s.RxErrs, RxDropped: s.RxDropped,
				TxBytes: s.TxBytes, TxPackets: s.TxPackets, TxErrs: s.TxErrs, TxDropped: s.TxDropped,
			}
		}
		out = append(out, gi)
	}
	return out, nil
}
