package methods

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// adapter is what get_network_info needs of one IP_ADAPTER_ADDRESSES.
type adapter struct {
	Name       string // FriendlyName, e.g. "Ethernet"
	MAC        []byte
	OperStatus uint32 // IF_OPER_STATUS
	MTU        uint32
	Addrs      []net.IPNet // unicast addresses with their on-link prefix
}

// listAdapters is GetAdaptersAddresses; tests replace it (Wine's fails).
var listAdapters = adaptersAddresses

// operStates maps IF_OPER_STATUS (1 up ... 7 lower layer down) to the names
// Linux's operstate uses, so that hosts see one vocabulary.
var operStatesWindows = map[uint32]string{
	1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notpresent", 7: "lowerlayerdown",
}

// get_network_info: every adapter GetAdaptersAddresses lists, with its MAC,
// addresses, operational state and MTU.
func (s *Service) networkInfo(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	ads, err := listAdapters()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "list network adapters: %v", err)
	}
	out := protocol.NetworkInfo{Interfaces: make([]protocol.Interface, 0, len(ads))}
	for _, a := range ads {
		out.Interfaces = append(out.Interfaces, a.toInterface())
	}
	return out, nil
}

func (a adapter) toInterface() protocol.Interface {
	it := protocol.Interface{
		Name:          a.Name,
		MACAddress:    "00:00:00:00:00:00",
		IPv4Addresses: []string{},
		IPv6Addresses: []string{},
		State:         "unknown",
		MTU:           int(a.MTU),
	}
	if len(a.MAC) > 0 {
		it.MACAddress = net.HardwareAddr(a.MAC).String()
	}
	if st, ok := operStatesWindows[a.OperStatus]; ok {
		it.State = st
	}
	if a.MTU == ^uint32(0) || a.MTU > 1<<24 {
		it.MTU = 0 // the loopback pseudo-interface reports -1
	}
	for _, ipn := range a.Addrs {
		ones, _ := ipn.Mask.Size()
		if v4 := ipn.IP.To4(); v4 != nil {
			it.IPv4Addresses = append(it.IPv4Addresses, fmt.Sprintf("%s/%d", v4, ones))
		} else {
			it.IPv6Addresses = append(it.IPv6Addresses, fmt.Sprintf("%s/%d", ipn.IP, ones))
		}
	}
	return it
}

// adaptersAddresses calls GetAdaptersAddresses (AF_UNSPEC, skipping
// anycast, multicast and DNS servers), growing the buffer as it asks.
func adaptersAddresses() ([]adapter, error) {
	const flags = windows.GAA_FLAG_SKIP_ANYCAST | windows.GAA_FLAG_SKIP_MULTICAST | windows.GAA_FLAG_SKIP_DNS_SERVER
	size := uint32(15 << 10)
	var buf []byte
	for range 4 {
		buf = make([]byte, size)
		err := windows.GetAdaptersAddresses(windows.AF_UNSPEC, flags, 0, (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])), &size)
		if err == nil {
			break
		}
		if !errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) {
			return nil, fmt.Errorf("GetAdaptersAddresses: %w", err)
		}
		buf = nil
	}
	if buf == nil || size == 0 {
		return nil, nil
	}
	var out []adapter
	for aa := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])); aa != nil; aa = aa.Next {
		a := adapter{
			Name:       windows.UTF16PtrToString(aa.FriendlyName),
			OperStatus: aa.OperStatus,
			MTU:        aa.Mtu,
		}
		if aa.PhysicalAddressLength > 0 {
			a.MAC = append([]byte(nil), aa.PhysicalAddress[:aa.PhysicalAddressLength]...)
		}
		for ua := aa.FirstUnicastAddress; ua != nil; ua = ua.Next {
			sa, err := ua.Address.Sockaddr.Sockaddr()
			if err != nil {
				continue
			}
			var ip net.IP
			bits := 32
			switch sa := sa.(type) {
			case *syscall.SockaddrInet4:
				ip = net.IP(append([]byte(nil), sa.Addr[:]...))
			case *syscall.SockaddrInet6:
				ip, bits = net.IP(append([]byte(nil), sa.Addr[:]...)), 128
			default:
				continue
			}
			a.Addrs = append(a.Addrs, net.IPNet{IP: ip, Mask: net.CIDRMask(int(ua.OnLinkPrefixLength), bits)})
		}
		out = append(out, a)
	}
	return out, nil
}
