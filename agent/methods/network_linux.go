package methods

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// zeroMAC is what `ip link` and /sys/class/net/lo/address show for loopback.
const zeroMAC = "00:00:00:00:00:00"

// get_network_info: every interface (netlink via package net) with its
// link-layer address, MTU, operstate and addresses with prefix length.
func (s *Service) networkInfo(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	if s.hostRoot == "/" {
		// The real machine: two netlink dumps, no sysfs reads.
		ifaces, err := netlinkInterfaces()
		if err == nil {
			return protocol.NetworkInfo{Interfaces: ifaces}, nil
		}
		s.log.Debug("netlink interface listing failed, using package net and sysfs", "err", err)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "list network interfaces: %v", err)
	}
	out := protocol.NetworkInfo{Interfaces: make([]protocol.Interface, 0, len(ifaces))}
	for _, ifi := range ifaces {
		it := protocol.Interface{
			Name:          ifi.Name,
			MACAddress:    s.macAddress(ifi),
			IPv4Addresses: []string{},
			IPv6Addresses: []string{},
			State:         s.operState(ifi.Name),
			MTU:           ifi.MTU,
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			// The interface may have gone away since the listing.
			s.log.Debug("interface addresses", "interface", ifi.Name, "err", err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			if v4 := ipn.IP.To4(); v4 != nil && len(ipn.Mask) == net.IPv4len {
				it.IPv4Addresses = append(it.IPv4Addresses, formatPrefix(v4.String(), ones))
			} else {
				it.IPv6Addresses = append(it.IPv6Addresses, formatPrefix(ipn.IP.String(), ones))
			}
		}
		out.Interfaces = append(out.Interfaces, it)
	}
	return out, nil
}

func formatPrefix(ip string, ones int) string {
	return ip + "/" + strconv.Itoa(ones)
}

// macAddress is the interface's link-layer address as `ip link` shows it.
// Package net leaves out an all-zero address, which loopback has; it is read
// back from sysfs then. Interfaces without a link-layer address (tun,
// wireguard, IP tunnels) get "".
func (s *Service) macAddress(ifi net.Interface) string {
	if len(ifi.HardwareAddr) > 0 {
		return ifi.HardwareAddr.String()
	}
	data, err := os.ReadFile(s.hostPath("/sys/class/net/" + ifi.Name + "/address"))
	if err == nil && strings.TrimSpace(string(data)) == zeroMAC {
		return zeroMAC
	}
	return ""
}

// operState reads /sys/class/net/<name>/operstate: "up", "down", "unknown",
// "dormant", "lowerlayerdown", "notpresent" or "testing".
func (s *Service) operState(name string) string {
	data, err := os.ReadFile(s.hostPath("/sys/class/net/" + name + "/operstate"))
	if err != nil {
		s.log.Debug("interface operstate", "interface", name, "err", err)
		return "unknown"
	}
	if st := strings.TrimSpace(string(data)); st != "" {
		return st
	}
	return "unknown"
}
