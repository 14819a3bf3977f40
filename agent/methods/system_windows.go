package methods

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

var (
	kernel32                 = windows.NewLazySystemDLL("kernel32.dll")
	procGlobalMemoryStatusEx = kernel32.NewProc("GlobalMemoryStatusEx")
	procGetTickCount64       = kernel32.NewProc("GetTickCount64")
)

// memoryStatusEx is MEMORYSTATUSEX.
type memoryStatusEx struct {
	length               uint32
	memoryLoad           uint32
	totalPhys            uint64
	availPhys            uint64
	totalPageFile        uint64
	availPageFile        uint64
	totalVirtual         uint64
	availVirtual         uint64
	availExtendedVirtual uint64
}

// currentVersionKey holds the product's name, edition and build.
const currentVersionKey = `SOFTWARE\Microsoft\Windows NT\CurrentVersion`

// windowsVersion is what the registry and RtlGetVersion say about the
// running Windows.
type windowsVersion struct {
	ProductName    string // "Windows 10 Pro", "Windows Server 2022 Datacenter"
	EditionID      string // "Professional", "ServerDatacenter"
	DisplayVersion string // "23H2" (ReleaseId "2009" on older builds)
	Build          uint32 // from RtlGetVersion, e.g. 22631
	UBR            uint32 // update build revision, e.g. 2861
	Major, Minor   uint32 // 10, 0
}

// osName is the product name; Windows 11 keeps "Windows 10" in
// ProductName, so builds from 22000 on (client editions) are renamed.
func (v windowsVersion) osName() string {
	name := v.ProductName
	if name == "" {
		name = "Windows"
	}
	if v.Build >= 22000 && strings.HasPrefix(name, "Windows 10") {
		name = "Windows 11" + strings.TrimPrefix(name, "Windows 10")
	}
	return name
}

// osVersion is "23H2 (build 22631.2861)", without the parts it lacks.
func (v windowsVersion) osVersion() string {
	build := strconv.FormatUint(uint64(v.Build), 10)
	if v.UBR != 0 {
		build += "." + strconv.FormatUint(uint64(v.UBR), 10)
	}
	if v.DisplayVersion == "" {
		return "build " + build
	}
	return v.DisplayVersion + " (build " + build + ")"
}

// kernelVersion is the NT version: "10.0.22631.2861".
func (v windowsVersion) kernelVersion() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Build)
	if v.UBR != 0 {
		s += "." + strconv.FormatUint(uint64(v.UBR), 10)
	}
	return s
}

// readWindowsVersion reads RtlGetVersion (which, unlike GetVersionEx, is not
// shimmed to an older version for programs without a manifest) and the
// CurrentVersion key.
func readWindowsVersion() windowsVersion {
	rv := windows.RtlGetVersion()
	v := windowsVersion{Major: rv.MajorVersion, Minor: rv.MinorVersion, Build: rv.BuildNumber}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, currentVersionKey, registry.QUERY_VALUE)
	if err != nil {
		return v
	}
	defer k.Close()
	v.ProductName, _, _ = k.GetStringValue("ProductName")
	v.EditionID, _, _ = k.GetStringValue("EditionID")
	if v.DisplayVersion, _, _ = k.GetStringValue("DisplayVersion"); v.DisplayVersion == "" {
		v.DisplayVersion, _, _ = k.GetStringValue("ReleaseId")
	}
	if ubr, _, err := k.GetIntegerValue("UBR"); err == nil {
		v.UBR = uint32(ubr)
	}
	return v
}

// machineNames maps IMAGE_FILE_MACHINE_* to the names Linux's uname uses,
// so that hosts see one vocabulary.
var machineNames = map[uint16]string{
	0x8664: "x86_64",  // IMAGE_FILE_MACHINE_AMD64
	0xAA64: "aarch64", // IMAGE_FILE_MACHINE_ARM64
	0x014C: "i686",    // IMAGE_FILE_MACHINE_I386
}

// nativeArchitecture is the machine's architecture, not the process's: an
// amd64 agent emulated on ARM64 Windows reports aarch64.
func nativeArchitecture() string {
	var process, native uint16
	if err := windows.IsWow64Process2(windows.CurrentProcess(), &process, &native); err == nil {
		if name, ok := machineNames[native]; ok {
			return name
		}
	}
	if runtime.GOARCH == "arm64" {
		return "aarch64"
	}
	return "x86_64"
}

// get_system_info: the registry's product name and build, RtlGetVersion,
// the host name, the CPUs, GlobalMemoryStatusEx and GetTickCount64.
func (s *Service) systemInfo(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "host name: %v", err)
	}
	v := readWindowsVersion()
	info := protocol.SystemInfo{
		OSType:        "windows",
		OSName:        v.osName(),
		OSVersion:     v.osVersion(),
		KernelVersion: v.kernelVersion(),
		Hostname:      host,
		Architecture:  nativeArchitecture(),
	}
	// ALL_PROCESSOR_GROUPS: every logical CPU, beyond 64 too.
	info.CPUCount = int(windows.GetActiveProcessorCount(windows.ALL_PROCESSOR_GROUPS))
	if info.CPUCount == 0 {
		info.CPUCount = runtime.NumCPU()
	}
	ms := memoryStatusEx{length: uint32(unsafe.Sizeof(memoryStatusEx{}))}
	if r, _, err := procGlobalMemoryStatusEx.Call(uintptr(unsafe.Pointer(&ms))); r == 0 {
		return nil, protocol.Errorf(protocol.CodeInternalError, "GlobalMemoryStatusEx: %v", err)
	}
	info.TotalMemoryKB = ms.totalPhys / 1024
	if err := procGetTickCount64.Find(); err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "GetTickCount64: %v", err)
	}
	ms64, _, _ := procGetTickCount64.Call()
	info.UptimeSeconds = uint64(ms64) / 1000
	return info, nil
}
