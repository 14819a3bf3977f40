package methods

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestWindowsVersionNames(t *testing.T) {
	tests := []struct {
		v                     windowsVersion
		name, version, kernel string
	}{
		{windowsVersion{ProductName: "Windows 10 Pro", DisplayVersion: "22H2", Major: 10, Build: 19045, UBR: 3803},
			"Windows 10 Pro", "22H2 (build 19045.3803)", "10.0.19045.3803"},
		// Windows 11 keeps "Windows 10" in ProductName.
		{windowsVersion{ProductName: "Windows 10 Enterprise", DisplayVersion: "23H2", Major: 10, Build: 22631, UBR: 2861},
			"Windows 11 Enterprise", "23H2 (build 22631.2861)", "10.0.22631.2861"},
		{windowsVersion{ProductName: "Windows Server 2022 Datacenter", DisplayVersion: "21H2", Major: 10, Build: 20348, UBR: 2113},
			"Windows Server 2022 Datacenter", "21H2 (build 20348.2113)", "10.0.20348.2113"},
		// Server 2025 is build 26100 and must not be renamed.
		{windowsVersion{ProductName: "Windows Server 2025 Standard", DisplayVersion: "24H2", Major: 10, Build: 26100, UBR: 1},
			"Windows Server 2025 Standard", "24H2 (build 26100.1)", "10.0.26100.1"},
		// What Wine's registry holds: no DisplayVersion, no UBR.
		{windowsVersion{ProductName: "Microsoft Windows 10", Major: 10, Build: 19045},
			"Microsoft Windows 10", "build 19045", "10.0.19045"},
		{windowsVersion{Major: 6, Minor: 3, Build: 9600}, "Windows", "build 9600", "6.3.9600"},
	}
	for _, tt := range tests {
		if got := tt.v.osName(); got != tt.name {
			t.Errorf("%+v: osName = %q, want %q", tt.v, got, tt.name)
		}
		if got := tt.v.osVersion(); got != tt.version {
			t.Errorf("%+v: osVersion = %q, want %q", tt.v, got, tt.version)
		}
		if got := tt.v.kernelVersion(); got != tt.kernel {
			t.Errorf("%+v: kernelVersion = %q, want %q", tt.v, got, tt.kernel)
		}
	}
}

// TestSystemInfoRealWindows asks the running Windows (Wine in the tests).
func TestSystemInfoRealWindows(t *testing.T) {
	s := newService(t, nil)
	res, err := s.systemInfo(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	info := res.(protocol.SystemInfo)
	host, _ := os.Hostname()
	if info.OSType != "windows" || info.Hostname != host || info.CPUCount < 1 || info.TotalMemoryKB < 1024 ||
		!strings.HasPrefix(info.KernelVersion, "10.") && !strings.HasPrefix(info.KernelVersion, "6.") ||
		(info.Architecture != "x86_64" && info.Architecture != "aarch64") || info.OSName == "" {
		t.Errorf("get_system_info = %+v", info)
	}
	t.Logf("get_system_info: %+v", info)
}
