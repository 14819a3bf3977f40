package methods

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// operStates are the names of IFLA_OPERSTATE values (RFC 2863), as
// /sys/class/net/<name>/operstate prints them.
var operStates = [...]string{"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"}

// iflaOperstate is IFLA_OPERSTATE, which package syscall does not name.
const iflaOperstate = 16

// netlinkInterfaces lists every interface with two netlink dumps, one of
// links (name, MTU, link-layer address, operstate) and one of addresses.
// Package net would dump all addresses once per interface and leave the
// state and loopback's all-zero address to sysfs reads, two more files per
// interface.
func netlinkInterfaces() ([]protocol.Interface, error) {
	links, err := netlinkDump(syscall.RTM_GETLINK, syscall.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.Interface, 0, len(links))
	byIndex := make(map[uint32]int, len(links))
	for _, m := range links {
		if len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		index := binary.NativeEndian.Uint32(m.Data[4:8])
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, fmt.Errorf("parse link %d: %w", index, err)
		}
		it := protocol.Interface{IPv4Addresses: []string{}, IPv6Addresses: []string{}, State: "unknown"}
		for _, a := range attrs {
			switch a.Attr.Type {
			case syscall.IFLA_IFNAME:
				it.Name = string(bytes.TrimRight(a.Value, "\x00"))
			case syscall.IFLA_MTU:
				if len(a.Value) >= 4 {
					it.MTU = int(binary.NativeEndian.Uint32(a.Value))
				}
			case syscall.IFLA_ADDRESS:
				it.MACAddress = linkAddress(a.Value)
			case iflaOperstate:
				if len(a.Value) >= 1 && int(a.Value[0]) < len(operStates) {
					it.State = operStates[a.Value[0]]
				}
			}
		}
		byIndex[index] = len(out)
		out = append(out, it)
	}

	addrs, err := netlinkDump(syscall.RTM_GETADDR, syscall.RTM_NEWADDR)
	if err != nil {
		return nil, err
	}
	for _, m := range addrs {
		if len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		family, prefix := m.Data[0], int(m.Data[1])
		i, ok := byIndex[binary.NativeEndian.Uint32(m.Data[4:8])]
		if !ok {
			continue // the interface appeared after the link dump
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, fmt.Errorf("parse address of %s: %w", out[i].Name, err)
		}
		// On a point-to-point link IFA_ADDRESS is the peer and IFA_LOCAL
		// the interface's own address (package net reads them alike).
		var ip []byte
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFA_LOCAL || (a.Attr.Type == syscall.IFA_ADDRESS && ip == nil) {
				ip = a.Value
			}
		}
		switch {
		case family == syscall.AF_INET && len(ip) == net.IPv4len:
			out[i].IPv4Addresses = append(out[i].IPv4Addresses, net.IP(ip).String()+"/"+strconv.Itoa(prefix))
		case family == syscall.AF_INET6 && len(ip) == net.IPv6len:
			out[i].IPv6Addresses = append(out[i].IPv6Addresses, net.IP(ip).String()+"/"+strconv.Itoa(prefix))
		}
	}
	return out, nil
}

// linkAddress formats a link-layer address as `ip link` does. An all-zero
// Ethernet-sized address (loopback) is kept; other all-zero addresses
// (tunnels) are no address.
func linkAddress(b []byte) string {
	if bytes.Count(b, []byte{0}) == len(b) {
		if len(b) == 6 {
			return zeroMAC
		}
		return ""
	}
	return net.HardwareAddr(b).String()
}

// netlinkDump runs one NETLINK_ROUTE dump request and returns its messages
// of type want.
func netlinkDump(req, want int) ([]syscall.NetlinkMessage, error) {
	rib, err := syscall.NetlinkRIB(req, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netlink dump %d: %w", req, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parse netlink dump %d: %w", req, err)
	}
	out := msgs[:0]
	for _, m := range msgs {
		if int(m.Header.Type) == want {
			out = append(out, m)
		}
	}
	return out, nil
}
