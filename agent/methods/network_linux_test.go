package methods

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestNetworkInfoRealMachine(t *testing.T) {
	s := newService(t, nil)
	var r protocol.NetworkInfo
	raw := mustCall(t, s.Handlers()[protocol.MethodGetNetworkInfo], nil, &r)
	if bytes.Contains(raw, []byte("null")) {
		t.Fatalf("result has a null (arrays must be []): %s", raw)
	}
	entries, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Skipf("no /sys/class/net: %v", err)
	}
	byName := map[string]protocol.Interface{}
	for _, it := range r.Interfaces {
		byName[it.Name] = it
	}
	for _, e := range entries {
		it, ok := byName[e.Name()]
		if !ok {
			t.Errorf("interface %s missing from %s", e.Name(), raw)
			continue
		}
		sys := func(f string) string {
			b, _ := os.ReadFile("/sys/class/net/" + e.Name() + "/" + f)
			return strings.TrimSpace(string(b))
		}
		if want := sys("operstate"); it.State != want {
			t.Errorf("%s: state %q, sysfs %q", it.Name, it.State, want)
		}
		if want, _ := strconv.Atoi(sys("mtu")); it.MTU != want {
			t.Errorf("%s: mtu %d, sysfs %d", it.Name, it.MTU, want)
		}
		if addr := sys("address"); len(addr) == 17 && it.MACAddress != addr {
			t.Errorf("%s: mac_address %q, sysfs %q", it.Name, it.MACAddress, addr)
		}
		for _, a := range append(slices.Clone(it.IPv4Addresses), it.IPv6Addresses...) {
			if _, _, err := net.ParseCIDR(a); err != nil {
				t.Errorf("%s: address %q is not addr/len: %v", it.Name, a, err)
			}
		}
		for _, a := range it.IPv4Addresses {
			if strings.Contains(a, ":") {
				t.Errorf("%s: IPv6 address %q among IPv4", it.Name, a)
			}
		}
		for _, a := range it.IPv6Addresses {
			if !strings.Contains(a, ":") {
				t.Errorf("%s: IPv4 address %q among IPv6", it.Name, a)
			}
		}
	}
	if lo, ok := byName["lo"]; ok {
		if lo.MACAddress != "00:00:00:00:00:00" || !slices.Contains(lo.IPv4Addresses, "127.0.0.1/8") {
			t.Errorf("lo = %+v, want MAC 00:00:00:00:00:00 and 127.0.0.1/8", lo)
		}
	}
	// Cross-check the addresses with iproute2 where it exists.
	out, err := exec.Command("ip", "-o", "addr", "show").Output()
	if err != nil {
		t.Logf("ip addr: %v; addresses not cross-checked", err)
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		name, fam, addr := strings.TrimSuffix(f[1], ":"), f[2], f[3]
		it := byName[name]
		list := it.IPv4Addresses
		if fam == "inet6" {
			list = it.IPv6Addresses
		}
		if !slices.Contains(list, addr) {
			t.Errorf("%s: `ip addr` shows %s %s, agent %+v", name, fam, addr, it)
		}
	}
}

func TestNetworkInfoStateFallback(t *testing.T) {
	// A host root without sysfs: every state is "unknown", never "".
	s := New(seedConfig(t), Options{HostRoot: t.TempDir(), Power: &fakePower{t: t}})
	var r protocol.NetworkInfo
	mustCall(t, s.Handlers()[protocol.MethodGetNetworkInfo], nil, &r)
	for _, it := range r.Interfaces {
		if it.State != "unknown" {
			t.Errorf("%s: state %q without sysfs, want unknown", it.Name, it.State)
		}
	}
}
