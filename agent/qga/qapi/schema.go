// Package qapi is the wire contract of the agent's QEMU guest agent dialect:
// the command names of QEMU's qga/qapi-schema.json (9.x) and a Go type for
// the arguments and the return value of every command, named and tagged
// exactly as the schema names them. It is the dialect's single source, as the
// schema is qemu-ga's: the handlers (agent/qga), the config validation of
// disabled_methods (agent/config) and the tests all use it.
//
// Conventions: a schema member "*name" (optional) is a field tagged
// ",omitempty"; an optional argument is a pointer, so a handler can tell it
// from its zero value; an optional return member whose zero value means
// something (an exit code 0, a false flag) is a pointer too. A QAPI enum is a
// string type with a QAPIEnum method listing its values; an alternate
// implements json.Unmarshaler and reports a bad enum string with
// *EnumValueError. Command arguments are <Command>Args structs (QAPI inlines
// them in the command).
package qapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// PortName is the virtio-serial port of the QEMU guest agent protocol.
const PortName = "org.qemu.guest_agent.0"

// Command names of the schema, in its order. Every one is a valid
// disabled_methods entry; the ones the agent does not implement answer as a
// disabled command does in qemu-ga.
const (
	CmdSyncDelimited          = "guest-sync-delimited"
	CmdSync                   = "guest-sync"
	CmdPing                   = "guest-ping"
	CmdGetTime                = "guest-get-time"
	CmdSetTime                = "guest-set-time"
	CmdInfo                   = "guest-info"
	CmdShutdown               = "guest-shutdown"
	CmdFileOpen               = "guest-file-open"
	CmdFileClose              = "guest-file-close"
	CmdFileRead               = "guest-file-read"
	CmdFileWrite              = "guest-file-write"
	CmdFileSeek               = "guest-file-seek"
	CmdFileFlush              = "guest-file-flush"
	CmdFsfreezeStatus         = "guest-fsfreeze-status"
	CmdFsfreezeFreeze         = "guest-fsfreeze-freeze"
	CmdFsfreezeFreezeList     = "guest-fsfreeze-freeze-list"
	CmdFsfreezeThaw           = "guest-fsfreeze-thaw"
	CmdFstrim                 = "guest-fstrim"
	CmdSuspendDisk            = "guest-suspend-disk"
	CmdSuspendRAM             = "guest-suspend-ram"
	CmdSuspendHybrid          = "guest-suspend-hybrid"
	CmdNetworkGetInterfaces   = "guest-network-get-interfaces"
	CmdGetVcpus               = "guest-get-vcpus"
	CmdSetVcpus               = "guest-set-vcpus"
	CmdGetDisks               = "guest-get-disks"
	CmdGetFsinfo              = "guest-get-fsinfo"
	CmdSetUserPassword        = "guest-set-user-password"
	CmdGetMemoryBlocks        = "guest-get-memory-blocks"
	CmdSetMemoryBlocks        = "guest-set-memory-blocks"
	CmdGetMemoryBlockInfo     = "guest-get-memory-block-info"
	CmdExecStatus             = "guest-exec-status"
	CmdExec                   = "guest-exec"
	CmdGetHostName            = "guest-get-host-name"
	CmdGetUsers               = "guest-get-users"
	CmdGetTimezone            = "guest-get-timezone"
	CmdGetOSInfo              = "guest-get-osinfo"
	CmdGetDevices             = "guest-get-devices"
	CmdSSHGetAuthorizedKeys   = "guest-ssh-get-authorized-keys"
	CmdSSHAddAuthorizedKeys   = "guest-ssh-add-authorized-keys"
	CmdSSHRemoveAuthorizedKey = "guest-ssh-remove-authorized-keys"
	CmdGetDiskstats           = "guest-get-diskstats"
	CmdGetCpustats            = "guest-get-cpustats"
	CmdGetLoad                = "guest-get-load"
	CmdNetworkGetRoute        = "guest-network-get-route"
)

// Commands lists every command of the schema, in its order.
var Commands = []string{
	CmdSyncDelimited, CmdSync, CmdPing, CmdGetTime, CmdSetTime, CmdInfo,
	CmdShutdown, CmdFileOpen, CmdFileClose, CmdFileRead, CmdFileWrite,
	CmdFileSeek, CmdFileFlush, CmdFsfreezeStatus, CmdFsfreezeFreeze,
	CmdFsfreezeFreezeList, CmdFsfreezeThaw, CmdFstrim, CmdSuspendDisk,
	CmdSuspendRAM, CmdSuspendHybrid, CmdNetworkGetInterfaces, CmdGetVcpus,
	CmdSetVcpus, CmdGetDisks, CmdGetFsinfo, CmdSetUserPassword,
	CmdGetMemoryBlocks, CmdSetMemoryBlocks, CmdGetMemoryBlockInfo,
	CmdExecStatus, CmdExec, CmdGetHostName, CmdGetUsers, CmdGetTimezone,
	CmdGetOSInfo, CmdGetDevices, CmdSSHGetAuthorizedKeys,
	CmdSSHAddAuthorizedKeys, CmdSSHRemoveAuthorizedKey, CmdGetDiskstats,
	CmdGetCpustats, CmdGetLoad, CmdNetworkGetRoute,
}

// NoSuccessResponse lists the commands the schema marks
// 'success-response': false: they send nothing when they succeed.
var NoSuccessResponse = []string{CmdShutdown, CmdSuspendDisk, CmdSuspendRAM, CmdSuspendHybrid}

// Known reports whether name is a command of the schema.
func Known(name string) bool { return slices.Contains(Commands, name) }

// EnumValueError is an alternate's report of a string that is not one of its
// enum's values.
type EnumValueError struct{ Value string }

func (e *EnumValueError) Error() string { return fmt.Sprintf("value %q is not accepted", e.Value) }

// checkEnum returns *EnumValueError unless v is one of values.
func checkEnum(v string, values []string) error {
	if slices.Contains(values, v) {
		return nil
	}
	return &EnumValueError{Value: v}
}

// ---- guest-sync, guest-sync-delimited, guest-ping, guest-info ----

// GuestSyncArgs are the arguments of guest-sync and guest-sync-delimited;
// both return the id.
type GuestSyncArgs struct {
	ID int64 `json:"id"`
}

// GuestAgentCommandInfo describes one command in guest-info.
type GuestAgentCommandInfo struct {
	Name            string `json:"name"`
	Enabled         bool   `json:"enabled"`
	SuccessResponse bool   `json:"success-response"`
}

// GuestAgentInfo is guest-info's return.
type GuestAgentInfo struct {
	Version           string                  `json:"version"`
	SupportedCommands []GuestAgentCommandInfo `json:"supported_commands"`
}

// ---- time ----

// guest-get-time returns an int: nanoseconds since the Epoch.

// GuestSetTimeArgs are guest-set-time's arguments; without Time the time is
// read from the RTC.
type GuestSetTimeArgs struct {
	Time *int64 `json:"time,omitempty"`
}

// ---- guest-shutdown ----

// GuestShutdownArgs are guest-shutdown's arguments: Mode is "halt",
// "powerdown" (default) or "reboot" (a 'str' in the schema, not an enum).
type GuestShutdownArgs struct {
	Mode *string `json:"mode,omitempty"`
}

// Shutdown modes.
const (
	ShutdownHalt      = "halt"
	ShutdownPowerdown = "powerdown"
	ShutdownReboot    = "reboot"
)

// ---- guest-file-* ----

// GuestFileOpenArgs are guest-file-open's arguments; it returns the handle
// (an int). Mode is as fopen()'s, "r" by default.
type GuestFileOpenArgs struct {
	Path string  `json:"path"`
	Mode *string `json:"mode,omitempty"`
}

// GuestFileHandleArgs are the arguments of guest-file-close and
// guest-file-flush.
type GuestFileHandleArgs struct {
	Handle int64 `json:"handle"`
}

// GuestFileReadArgs are guest-file-read's arguments; Count defaults to 4096.
type GuestFileReadArgs struct {
	Handle int64  `json:"handle"`
	Count  *int64 `json:"count,omitempty"`
}

// GuestFileRead is guest-file-read's return.
type GuestFileRead struct {
	Count  int64  `json:"count"`
	BufB64 string `json:"buf-b64"`
	EOF    bool   `json:"eof"`
}

// GuestFileWriteArgs are guest-file-write's arguments; Count defaults to the
// whole decoded buffer.
type GuestFileWriteArgs struct {
	Handle int64  `json:"handle"`
	BufB64 string `json:"buf-b64"`
	Count  *int64 `json:"count,omitempty"`
}

// GuestFileWrite is guest-file-write's return.
type GuestFileWrite struct {
	Count int64 `json:"count"`
	EOF   bool  `json:"eof"`
}

// GuestFileSeek is guest-file-seek's return.
type GuestFileSeek struct {
	Position int64 `json:"position"`
	EOF      bool  `json:"eof"`
}

// QGASeek is the symbolic whence of guest-file-seek.
type QGASeek string

// QGASeek values.
const (
	QGASeekSet QGASeek = "set"
	QGASeekCur QGASeek = "cur"
	QGASeekEnd QGASeek = "end"
)

// QAPIEnum lists QGASeek's values.
func (QGASeek) QAPIEnum() []string { return []string{"set", "cur", "end"} }

// GuestFileWhence is the alternate 'value': int (0 set, 1 cur, 2 end) or
// 'name': QGASeek.
type GuestFileWhence struct {
	Value *int64
	Name  *QGASeek
}

// UnmarshalJSON accepts an integer or a QGASeek string.
func (w *GuestFileWhence) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if err := checkEnum(s, QGASeek("").QAPIEnum()); err != nil {
			return err
		}
		n := QGASeek(s)
		*w = GuestFileWhence{Name: &n}
		return nil
	}
	if !isInteger(b) {
		return fmt.Errorf("want an integer or a string")
	}
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*w = GuestFileWhence{Value: &v}
	return nil
}

// MarshalJSON writes the member that is set.
func (w GuestFileWhence) MarshalJSON() ([]byte, error) {
	if w.Name != nil {
		return json.Marshal(*w.Name)
	}
	if w.Value != nil {
		return json.Marshal(*w.Value)
	}
	return []byte("null"), nil
}

// GuestFileSeekArgs are guest-file-seek's arguments.
type GuestFileSeekArgs struct {
	Handle int64           `json:"handle"`
	Offset int64           `json:"offset"`
	Whence GuestFileWhence `json:"whence"`
}

// ---- fsfreeze, fstrim ----

// GuestFsfreezeStatus is guest-fsfreeze-status's return.
type GuestFsfreezeStatus string

// GuestFsfreezeStatus values.
const (
	FsfreezeThawed GuestFsfreezeStatus = "thawed"
	FsfreezeFrozen GuestFsfreezeStatus = "frozen"
)

// QAPIEnum lists GuestFsfreezeStatus's values.
func (GuestFsfreezeStatus) QAPIEnum() []string { return []string{"thawed", "frozen"} }

// guest-fsfreeze-freeze and guest-fsfreeze-thaw return an int (the number
// of file systems frozen or thawed).

// GuestFsfreezeFreezeListArgs are guest-fsfreeze-freeze-list's arguments;
// it returns an int.
type GuestFsfreezeFreezeListArgs struct {
	Mountpoints []string `json:"mountpoints,omitempty"`
}

// GuestFstrimArgs are guest-fstrim's arguments.
type GuestFstrimArgs struct {
	Minimum *int64 `json:"minimum,omitempty"`
}

// GuestFilesystemTrimResult is one path of guest-fstrim's return.
type GuestFilesystemTrimResult struct {
	Path    string `json:"path"`
	Trimmed *int64 `json:"trimmed,omitempty"`
	Minimum *int64 `json:"minimum,omitempty"`
	Error   string `json:"error,omitempty"`
}

// GuestFilesystemTrimResponse is guest-fstrim's return.
type GuestFilesystemTrimResponse struct {
	Paths []GuestFilesystemTrimResult `json:"paths"`
}

// ---- guest-network-get-interfaces ----

// GuestIpAddressType is ipv4 or ipv6.
type GuestIpAddressType string

// GuestIpAddressType values.
const (
	IPv4 GuestIpAddressType = "ipv4"
	IPv6 GuestIpAddressType = "ipv6"
)

// QAPIEnum lists GuestIpAddressType's values.
func (GuestIpAddressType) QAPIEnum() []string { return []string{"ipv4", "ipv6"} }

// GuestIpAddress is one address of an interface.
type GuestIpAddress struct {
	IPAddress     string             `json:"ip-address"`
	IPAddressType GuestIpAddressType `json:"ip-address-type"`
	Prefix        int64              `json:"prefix"`
}

// GuestNetworkInterfaceStat are an interface's counters.
type GuestNetworkInterfaceStat struct {
	RxBytes   uint64 `json:"rx-bytes"`
	RxPackets uint64 `json:"rx-packets"`
	RxErrs    uint64 `json:"rx-errs"`
	RxDropped uint64 `json:"rx-dropped"`
	TxBytes   uint64 `json:"tx-bytes"`
	TxPackets uint64 `json:"tx-packets"`
	TxErrs    uint64 `json:"tx-errs"`
	TxDropped uint64 `json:"tx-dropped"`
}

// GuestNetworkInterface is one element of guest-network-get-interfaces'
// return.
type GuestNetworkInterface struct {
	Name            string                     `json:"name"`
	HardwareAddress string                     `json:"hardware-address,omitempty"`
	IPAddresses     []GuestIpAddress           `json:"ip-addresses,omitempty"`
	Statistics      *GuestNetworkInterfaceStat `json:"statistics,omitempty"`
}

// GuestNetworkRoute is one element of guest-network-get-route's return (9.1).
type GuestNetworkRoute struct {
	Iface        string  `json:"iface"`
	Destination  string  `json:"destination"`
	Metric       int64   `json:"metric"`
	Gateway      string  `json:"gateway,omitempty"`
	Mask         string  `json:"mask,omitempty"`
	Irtt         *int64  `json:"irtt,omitempty"`
	Flags        *uint64 `json:"flags,omitempty"`
	Refcnt       *int64  `json:"refcnt,omitempty"`
	Use          *int64  `json:"use,omitempty"`
	Window       *int64  `json:"window,omitempty"`
	MTU          *int64  `json:"mtu,omitempty"`
	Desprefixlen string  `json:"desprefixlen,omitempty"`
	Source       string  `json:"source,omitempty"`
	Srcprefixlen string  `json:"srcprefixlen,omitempty"`
	Nexthop      string  `json:"nexthop,omitempty"`
	Version      int64   `json:"version"`
}

// ---- vcpus, memory blocks ----

// GuestLogicalProcessor is one vCPU.
type GuestLogicalProcessor struct {
	LogicalID  int64 `json:"logical-id"`
	Online     bool  `json:"online"`
	CanOffline *bool `json:"can-offline,omitempty"`
}

// GuestSetVcpusArgs are guest-set-vcpus's arguments; it returns an int.
type GuestSetVcpusArgs struct {
	Vcpus []GuestLogicalProcessor `json:"vcpus"`
}

// GuestMemoryBlock is one memory block.
type GuestMemoryBlock struct {
	PhysIndex  uint64 `json:"phys-index"`
	Online     bool   `json:"online"`
	CanOffline *bool  `json:"can-offline,omitempty"`
}

// GuestMemoryBlockResponseType is the outcome for one block.
type GuestMemoryBlockResponseType string

// QAPIEnum lists GuestMemoryBlockResponseType's values.
func (GuestMemoryBlockResponseType) QAPIEnum() []string {
	return []string{"success", "not-found", "operation-not-supported", "operation-failed"}
}

// GuestMemoryBlockResponse is one element of guest-set-memory-blocks' return.
type GuestMemoryBlockResponse struct {
	PhysIndex uint64                       `json:"phys-index"`
	Response  GuestMemoryBlockResponseType `json:"response"`
	ErrorCode *int64                       `json:"error-code,omitempty"`
}

// GuestSetMemoryBlocksArgs are guest-set-memory-blocks' arguments.
type GuestSetMemoryBlocksArgs struct {
	MemBlks []GuestMemoryBlock `json:"mem-blks"`
}

// GuestMemoryBlockInfo is guest-get-memory-block-info's return.
type GuestMemoryBlockInfo struct {
	Size uint64 `json:"size"`
}

// ---- disks and file systems ----

// GuestDiskBusType is a disk's bus.
type GuestDiskBusType string

// GuestDiskBusType values.
const (
	BusIDE               GuestDiskBusType = "ide"
	BusFDC               GuestDiskBusType = "fdc"
	BusSCSI              GuestDiskBusType = "scsi"
	BusVirtio            GuestDiskBusType = "virtio"
	BusXen               GuestDiskBusType = "xen"
	BusUSB               GuestDiskBusType = "usb"
	BusUML               GuestDiskBusType = "uml"
	BusSATA              GuestDiskBusType = "sata"
	BusSD                GuestDiskBusType = "sd"
	BusUnknown           GuestDiskBusType = "unknown"
	BusIEEE1394          GuestDiskBusType = "ieee1394"
	BusSSA               GuestDiskBusType = "ssa"
	BusFibre             GuestDiskBusType = "fibre"
	BusRAID              GuestDiskBusType = "raid"
	BusISCSI             GuestDiskBusType = "iscsi"
	BusSAS               GuestDiskBusType = "sas"
	BusMMC               GuestDiskBusType = "mmc"
	BusVirtual           GuestDiskBusType = "virtual"
	BusFileBackedVirtual GuestDiskBusType = "file-backed-virtual"
	BusNVMe              GuestDiskBusType = "nvme"
)

// QAPIEnum lists GuestDiskBusType's values.
func (GuestDiskBusType) QAPIEnum() []string {
	return []string{"ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd", "unknown",
		"ieee1394", "ssa", "fibre", "raid", "iscsi", "sas", "mmc", "virtual", "file-backed-virtual", "nvme"}
}

// GuestPCIAddress is a PCI address.
type GuestPCIAddress struct {
	Domain   int64 `json:"domain"`
	Bus      int64 `json:"bus"`
	Slot     int64 `json:"slot"`
	Function int64 `json:"function"`
}

// GuestCCWAddress is an s390 CCW address.
type GuestCCWAddress struct {
	Cssid   int64 `json:"cssid"`
	Ssid    int64 `json:"ssid"`
	Subchno int64 `json:"subchno"`
	Devno   int64 `json:"devno"`
}

// GuestDiskAddress locates a disk.
type GuestDiskAddress struct {
	PCIController GuestPCIAddress  `json:"pci-controller"`
	BusType       GuestDiskBusType `json:"bus-type"`
	Bus           int64            `json:"bus"`
	Target        int64            `json:"target"`
	Unit          int64            `json:"unit"`
	Serial        string           `json:"serial,omitempty"`
	Dev           string           `json:"dev,omitempty"`
	CCWAddress    *GuestCCWAddress `json:"ccw-address,omitempty"`
}

// GuestNVMeSmart is an NVMe disk's SMART data.
type GuestNVMeSmart struct {
	CriticalWarning           int64  `json:"critical-warning"`
	Temperature               int64  `json:"temperature"`
	AvailableSpare            int64  `json:"available-spare"`
	AvailableSpareThreshold   int64  `json:"available-spare-threshold"`
	PercentageUsed            int64  `json:"percentage-used"`
	DataUnitsReadLo           uint64 `json:"data-units-read-lo"`
	DataUnitsReadHi           uint64 `json:"data-units-read-hi"`
	DataUnitsWrittenLo        uint64 `json:"data-units-written-lo"`
	DataUnitsWrittenHi        uint64 `json:"data-units-written-hi"`
	HostReadCommandsLo        uint64 `json:"host-read-commands-lo"`
	HostReadCommandsHi        uint64 `json:"host-read-commands-hi"`
	HostWriteCommandsLo       uint64 `json:"host-write-commands-lo"`
	HostWriteCommandsHi       uint64 `json:"host-write-commands-hi"`
	ControllerBusyTimeLo      uint64 `json:"controller-busy-time-lo"`
	ControllerBusyTimeHi      uint64 `json:"controller-busy-time-hi"`
	PowerCyclesLo             uint64 `json:"power-cycles-lo"`
	PowerCyclesHi             uint64 `json:"power-cycles-hi"`
	PowerOnHoursLo            uint64 `json:"power-on-hours-lo"`
	PowerOnHoursHi            uint64 `json:"power-on-hours-hi"`
	UnsafeShutdownsLo         uint64 `json:"unsafe-shutdowns-lo"`
	UnsafeShutdownsHi         uint64 `json:"unsafe-shutdowns-hi"`
	MediaErrorsLo             uint64 `json:"media-errors-lo"`
	MediaErrorsHi             uint64 `json:"media-errors-hi"`
	NumberOfErrorLogEntriesLo uint64 `json:"number-of-error-log-entries-lo"`
	NumberOfErrorLogEntriesHi uint64 `json:"number-of-error-log-entries-hi"`
}

// GuestDiskSmart is the union of SMART data, discriminated by the bus type
// (only "nvme" has members).
type GuestDiskSmart struct {
	Type GuestDiskBusType `json:"type"`
	*GuestNVMeSmart
}

// GuestDiskInfo is one element of guest-get-disks' return.
type GuestDiskInfo struct {
	Name         string            `json:"name"`
	Partition    bool              `json:"partition"`
	Dependencies []string          `json:"dependencies,omitempty"`
	Address      *GuestDiskAddress `json:"address,omitempty"`
	Alias        string            `json:"alias,omitempty"`
	Smart        *GuestDiskSmart   `json:"smart,omitempty"`
}

// GuestFilesystemInfo is one element of guest-get-fsinfo's return. Disk is
// always present (an empty array when the disks are unknown), as libvirt
// expects.
type GuestFilesystemInfo struct {
	Name       string             `json:"name"`
	Mountpoint string             `json:"mountpoint"`
	Type       string             `json:"type"`
	UsedBytes  *uint64            `json:"used-bytes,omitempty"`
	TotalBytes *uint64            `json:"total-bytes,omitempty"`
	Disk       []GuestDiskAddress `json:"disk"`
}

// GuestDiskStats are one disk's I/O counters (all optional).
type GuestDiskStats struct {
	ReadSectors    *uint64 `json:"read-sectors,omitempty"`
	ReadIos        *uint64 `json:"read-ios,omitempty"`
	ReadMerges     *uint64 `json:"read-merges,omitempty"`
	WriteSectors   *uint64 `json:"write-sectors,omitempty"`
	WriteIos       *uint64 `json:"write-ios,omitempty"`
	WriteMerges    *uint64 `json:"write-merges,omitempty"`
	DiscardSectors *uint64 `json:"discard-sectors,omitempty"`
	DiscardIos     *uint64 `json:"discard-ios,omitempty"`
	DiscardMerges  *uint64 `json:"discard-merges,omitempty"`
	FlushIos       *uint64 `json:"flush-ios,omitempty"`
	ReadTicks      *uint64 `json:"read-ticks,omitempty"`
	WriteTicks     *uint64 `json:"write-ticks,omitempty"`
	DiscardTicks   *uint64 `json:"discard-ticks,omitempty"`
	FlushTicks     *uint64 `json:"flush-ticks,omitempty"`
	IosPgr         *uint64 `json:"ios-pgr,omitempty"`
	TotalTicks     *uint64 `json:"total-ticks,omitempty"`
	WeightTicks    *uint64 `json:"weight-ticks,omitempty"`
}

// GuestDiskStatsInfo is one element of guest-get-diskstats' return.
type GuestDiskStatsInfo struct {
	Name  string         `json:"name"`
	Major uint64         `json:"major"`
	Minor uint64         `json:"minor"`
	Stats GuestDiskStats `json:"stats"`
}

// ---- cpu stats, load ----

// GuestCpuStatsType discriminates GuestCpuStats.
type GuestCpuStatsType string

// CPUStatsLinux is the only GuestCpuStatsType.
const CPUStatsLinux GuestCpuStatsType = "linux"

// QAPIEnum lists GuestCpuStatsType's values.
func (GuestCpuStatsType) QAPIEnum() []string { return []string{"linux"} }

// GuestLinuxCpuStats is one CPU's line of /proc/stat.
type GuestLinuxCpuStats struct {
	CPU       int64   `json:"cpu"`
	User      uint64  `json:"user"`
	Nice      uint64  `json:"nice"`
	System    uint64  `json:"system"`
	Idle      uint64  `json:"idle"`
	Iowait    *uint64 `json:"iowait,omitempty"`
	Irq       *uint64 `json:"irq,omitempty"`
	Softirq   *uint64 `json:"softirq,omitempty"`
	Steal     *uint64 `json:"steal,omitempty"`
	Guest     *uint64 `json:"guest,omitempty"`
	Guestnice *uint64 `json:"guestnice,omitempty"`
}

// GuestCpuStats is the union returned by guest-get-cpustats (one element
// per CPU); Type is "linux" and the GuestLinuxCpuStats members are inline.
type GuestCpuStats struct {
	Type GuestCpuStatsType `json:"type"`
	*GuestLinuxCpuStats
}

// GuestLoadAverage is guest-get-load's return (9.0).
type GuestLoadAverage struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// ---- users, passwords, ssh keys ----

// GuestSetUserPasswordArgs are guest-set-user-password's arguments.
type GuestSetUserPasswordArgs struct {
	Username string `json:"username"`
	Password string `json:"password"` // base64 of the password or crypted hash
	Crypted  bool   `json:"crypted"`
}

// GuestUser is one element of guest-get-users' return.
type GuestUser struct {
	User      string  `json:"user"`
	LoginTime float64 `json:"login-time"`
	Domain    string  `json:"domain,omitempty"`
}

// GuestTimezone is guest-get-timezone's return.
type GuestTimezone struct {
	Zone   string `json:"zone,omitempty"`
	Offset int64  `json:"offset"`
}

// GuestSSHUserArgs are guest-ssh-get-authorized-keys' arguments.
type GuestSSHUserArgs struct {
	Username string `json:"username"`
}

// GuestAuthorizedKeys is guest-ssh-get-authorized-keys' return.
type GuestAuthorizedKeys struct {
	Keys []string `json:"keys"`
}

// GuestSSHAddAuthorizedKeysArgs are guest-ssh-add-authorized-keys' arguments.
type GuestSSHAddAuthorizedKeysArgs struct {
	Username string   `json:"username"`
	Keys     []string `json:"keys"`
	Reset    *bool    `json:"reset,omitempty"`
}

// GuestSSHRemoveAuthorizedKeysArgs are guest-ssh-remove-authorized-keys'
// arguments.
type GuestSSHRemoveAuthorizedKeysArgs struct {
	Username string   `json:"username"`
	Keys     []string `json:"keys"`
}

// ---- exec ----

// GuestExecCaptureOutputMode says which output guest-exec captures (8.1).
type GuestExecCaptureOutputMode string

// GuestExecCaptureOutputMode values.
const (
	CaptureNone      GuestExecCaptureOutputMode = "none"
	CaptureStdout    GuestExecCaptureOutputMode = "stdout"
	CaptureStderr    GuestExecCaptureOutputMode = "stderr"
	CaptureSeparated GuestExecCaptureOutputMode = "separated"
	CaptureMerged    GuestExecCaptureOutputMode = "merged"
)

// QAPIEnum lists GuestExecCaptureOutputMode's values.
func (GuestExecCaptureOutputMode) QAPIEnum() []string {
	return []string{"none", "stdout", "stderr", "separated", "merged"}
}

// GuestExecCaptureOutput is the alternate 'flag': bool (true: separated,
// false: none) or 'mode': GuestExecCaptureOutputMode.
type GuestExecCaptureOutput struct {
	Mode GuestExecCaptureOutputMode
}

// UnmarshalJSON accepts a boolean or a GuestExecCaptureOutputMode.
func (c *GuestExecCaptureOutput) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("true")):
		c.Mode = CaptureSeparated
	case bytes.Equal(b, []byte("false")):
		c.Mode = CaptureNone
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if err := checkEnum(s, GuestExecCaptureOutputMode("").QAPIEnum()); err != nil {
			return err
		}
		c.Mode = GuestExecCaptureOutputMode(s)
	default:
		return fmt.Errorf("want a boolean or a string")
	}
	return nil
}

// MarshalJSON writes the mode.
func (c GuestExecCaptureOutput) MarshalJSON() ([]byte, error) { return json.Marshal(c.Mode) }

// GuestExecArgs are guest-exec's arguments. InputData is base64.
type GuestExecArgs struct {
	Path          string                  `json:"path"`
	Arg           []string                `json:"arg,omitempty"`
	Env           []string                `json:"env,omitempty"`
	InputData     *string                 `json:"input-data,omitempty"`
	CaptureOutput *GuestExecCaptureOutput `json:"capture-output,omitempty"`
}

// GuestExec is guest-exec's return.
type GuestExec struct {
	PID int64 `json:"pid"`
}

// GuestExecStatusArgs are guest-exec-status' arguments.
type GuestExecStatusArgs struct {
	PID int64 `json:"pid"`
}

// GuestExecStatus is guest-exec-status' return. OutData and ErrData are
// base64.
type GuestExecStatus struct {
	Exited       bool    `json:"exited"`
	Exitcode     *int64  `json:"exitcode,omitempty"`
	Signal       *int64  `json:"signal,omitempty"`
	OutData      *string `json:"out-data,omitempty"`
	ErrData      *string `json:"err-data,omitempty"`
	OutTruncated *bool   `json:"out-truncated,omitempty"`
	ErrTruncated *bool   `json:"err-truncated,omitempty"`
}

// ---- host name, os info ----

// GuestHostName is guest-get-host-name's return.
type GuestHostName struct {
	HostName string `json:"host-name"`
}

// GuestOSInfo is guest-get-osinfo's return.
type GuestOSInfo struct {
	KernelRelease string `json:"kernel-release,omitempty"`
	KernelVersion string `json:"kernel-version,omitempty"`
	Machine       string `json:"machine,omitempty"`
	ID            string `json:"id,omitempty"`
	Name          string `json:"name,omitempty"`
	PrettyName    string `json:"pretty-name,omitempty"`
	Version       string `json:"version,omitempty"`
	VersionID     string `json:"version-id,omitempty"`
	Variant       string `json:"variant,omitempty"`
	VariantID     string `json:"variant-id,omitempty"`
}

// isInteger reports whether b is a JSON number without fraction or
// exponent (a QAPI 'int' token).
func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
