package protocol

// Protocol 1.1 method names: the guest operations shared with the QEMU guest
// agent dialect (agent/qga). They are served next to the 1.0 methods; a 1.0
// host never sees them unless it calls them.
const (
	MethodFsfreezeStatus          = "fsfreeze_status"
	MethodFsfreezeFreeze          = "fsfreeze_freeze"
	MethodFsfreezeThaw            = "fsfreeze_thaw"
	MethodGetTime                 = "get_time"
	MethodSetTime                 = "set_time"
	MethodGetUsers                = "get_users"
	MethodGetTimezone             = "get_timezone"
	MethodGetLoad                 = "get_load"
	MethodGetMemoryInfo           = "get_memory_info"
	MethodGetCPUStats             = "get_cpu_stats"
	MethodGetDiskStats            = "get_disk_stats"
	MethodSSHGetAuthorizedKeys    = "ssh_get_authorized_keys"
	MethodSSHAddAuthorizedKeys    = "ssh_add_authorized_keys"
	MethodSSHRemoveAuthorizedKeys = "ssh_remove_authorized_keys"
	MethodSetUserPassword         = "set_user_password"
)

// GuestOpsMethods lists the protocol 1.1 guest-operation methods, in
// documentation order. They are not in Methods (the 1.0 list), so that
// get_agent_info's 1.0 reply stays as it was.
var GuestOpsMethods = []string{
	MethodFsfreezeStatus, MethodFsfreezeFreeze, MethodFsfreezeThaw,
	MethodGetTime, MethodSetTime, MethodGetUsers, MethodGetTimezone,
	MethodGetLoad, MethodGetMemoryInfo, MethodGetCPUStats, MethodGetDiskStats,
	MethodSSHGetAuthorizedKeys, MethodSSHAddAuthorizedKeys,
	MethodSSHRemoveAuthorizedKeys, MethodSetUserPassword,
}

// Freeze states reported by fsfreeze_status.
const (
	FsfreezeThawed = "thawed"
	FsfreezeFrozen = "frozen"
)

// FsfreezeStatus is the result of fsfreeze_status.
type FsfreezeStatus struct {
	// Status is "thawed" or "frozen".
	Status string `json:"status"`
	// Mountpoints are the file systems the agent froze, in freeze order
	// (empty when thawed).
	Mountpoints []string `json:"mountpoints"`
	// AutoThawSeconds is the time left before the agent thaws by itself
	// (fsfreeze_timeout_seconds after the freeze); 0 when thawed.
	AutoThawSeconds float64 `json:"auto_thaw_seconds"`
}

// FsfreezeFreezeParams are the params of fsfreeze_freeze.
type FsfreezeFreezeParams struct {
	// Mountpoints limits the freeze to these mount points; absent or null
	// means every freezable file system. Mount points that are not
	// freezable mounted file systems are ignored, as qemu-ga does.
	Mountpoints []string `json:"mountpoints,omitempty"`
}

// FsfreezeFreezeResult is the result of fsfreeze_freeze.
type FsfreezeFreezeResult struct {
	// Frozen is the number of file systems frozen.
	Frozen int `json:"frozen"`
	// Mountpoints are those file systems, in freeze order (deepest first).
	Mountpoints []string `json:"mountpoints"`
	// AutoThawSeconds is the bound after which the agent thaws by itself.
	AutoThawSeconds int `json:"auto_thaw_seconds"`
}

// FsfreezeThawResult is the result of fsfreeze_thaw.
type FsfreezeThawResult struct {
	// Thawed is the number of file systems this call thawed.
	Thawed int `json:"thawed"`
}

// TimeInfo is the result of get_time.
type TimeInfo struct {
	// TimeNs is the system clock (CLOCK_REALTIME) in nanoseconds since
	// 1970-01-01 UTC.
	TimeNs int64 `json:"time_ns"`
	// ClockSource is the kernel's current clock source (e.g. "kvm-clock",
	// "tsc"), "" when the system does not say.
	ClockSource string `json:"clock_source"`
}

// SetTimeParams are the params of set_time.
type SetTimeParams struct {
	// TimeNs is the time to set, nanoseconds since the epoch; absent means
	// "read the hardware clock (RTC) and set the system clock from it".
	TimeNs *int64 `json:"time_ns,omitempty"`
}

// SetTimeResult is the result of set_time.
type SetTimeResult struct {
	// TimeNs is the system clock right after it was set.
	TimeNs int64 `json:"time_ns"`
	// Source is "request" (time_ns given) or "rtc".
	Source string `json:"source"`
	// RTCUpdated is true when the hardware clock was set to the new system
	// time too (time_ns given and an RTC present).
	RTCUpdated bool `json:"rtc_updated"`
}

// User is one logged-in user of get_users.
type User struct {
	User string `json:"user"`
	// Domain is the logon domain (Windows); empty on Linux.
	Domain string `json:"domain,omitempty"`
	// LoginTime is the earliest login of this user, fractional seconds
	// since the epoch.
	LoginTime float64 `json:"login_time"`
}

// Users is the result of get_users.
type Users struct {
	Users []User `json:"users"`
}

// Timezone is the result of get_timezone.
type Timezone struct {
	// Zone is the zone's abbreviation now ("UTC", "CEST"), as qemu-ga reports it.
	Zone string `json:"zone"`
	// Name is the IANA name when known ("Europe/Paris"), else "".
	Name string `json:"name,omitempty"`
	// Offset is the offset to UTC in seconds, positive east of Greenwich.
	Offset int `json:"offset"`
}

// LoadAverage is the result of get_load (/proc/loadavg).
type LoadAverage struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
	// Running and Total count the runnable and all scheduling entities
	// (threads).
	Running uint64 `json:"running"`
	Total   uint64 `json:"total"`
}

// MemoryInfo is the result of get_memory_info, in bytes (/proc/meminfo).
type MemoryInfo struct {
	TotalBytes     uint64 `json:"total_bytes"`
	FreeBytes      uint64 `json:"free_bytes"`
	AvailableBytes uint64 `json:"available_bytes"`
	// UsedBytes is total - available: what the guest really uses, the
	// reclaimable page cache not counted.
	UsedBytes    uint64 `json:"used_bytes"`
	BuffersBytes uint64 `json:"buffers_bytes"`
	// CachedBytes is the page cache (Cached + SReclaimable), as free(1)'s
	// buff/cache column without the buffers.
	CachedBytes    uint64 `json:"cached_bytes"`
	SwapTotalBytes uint64 `json:"swap_total_bytes"`
	SwapFreeBytes  uint64 `json:"swap_free_bytes"`
}

// CPUStats is one CPU's times of get_cpu_stats, in milliseconds since boot
// (/proc/stat). The optional fields are absent on kernels that lack them.
type CPUStats struct {
	CPU       int     `json:"cpu"`
	User      uint64  `json:"user"`
	Nice      uint64  `json:"nice"`
	System    uint64  `json:"system"`
	Idle      uint64  `json:"idle"`
	Iowait    *uint64 `json:"iowait,omitempty"`
	Irq       *uint64 `json:"irq,omitempty"`
	Softirq   *uint64 `json:"softirq,omitempty"`
	Steal     *uint64 `json:"steal,omitempty"`
	Guest     *uint64 `json:"guest,omitempty"`
	GuestNice *uint64 `json:"guest_nice,omitempty"`
}

// CPUStatsResult is the result of get_cpu_stats.
type CPUStatsResult struct {
	CPUs []CPUStats `json:"cpus"`
}

// DiskStats is one block device of get_disk_stats (/proc/diskstats). Times
// are milliseconds; discard and flush figures are absent on kernels that
// do not report them.
type DiskStats struct {
	Name           string  `json:"name"`
	Major          uint64  `json:"major"`
	Minor          uint64  `json:"minor"`
	ReadIOs        uint64  `json:"read_ios"`
	ReadMerges     uint64  `json:"read_merges"`
	ReadSectors    uint64  `json:"read_sectors"`
	ReadTicks      uint64  `json:"read_ticks"`
	WriteIOs       uint64  `json:"write_ios"`
	WriteMerges    uint64  `json:"write_merges"`
	WriteSectors   uint64  `json:"write_sectors"`
	WriteTicks     uint64  `json:"write_ticks"`
	IOsInProgress  uint64  `json:"ios_in_progress"`
	TotalTicks     uint64  `json:"total_ticks"`
	WeightTicks    uint64  `json:"weight_ticks"`
	DiscardIOs     *uint64 `json:"discard_ios,omitempty"`
	DiscardMerges  *uint64 `json:"discard_merges,omitempty"`
	DiscardSectors *uint64 `json:"discard_sectors,omitempty"`
	DiscardTicks   *uint64 `json:"discard_ticks,omitempty"`
	FlushIOs       *uint64 `json:"flush_ios,omitempty"`
	FlushTicks     *uint64 `json:"flush_ticks,omitempty"`
}

// DiskStatsResult is the result of get_disk_stats.
type DiskStatsResult struct {
	Disks []DiskStats `json:"disks"`
}

// PCIAddress is a PCI function address; -1 in every field when unknown.
type PCIAddress struct {
	Domain   int `json:"domain"`
	Bus      int `json:"bus"`
	Slot     int `json:"slot"`
	Function int `json:"function"`
}

// Disk bus types (the values of QEMU's GuestDiskBusType that Linux reports).
const (
	BusIDE     = "ide"
	BusSCSI    = "scsi"
	BusVirtio  = "virtio"
	BusUSB     = "usb"
	BusSATA    = "sata"
	BusNVMe    = "nvme"
	BusUnknown = "unknown"
)

// DiskAddress locates a disk on the virtual hardware, as libvirt needs to
// match it with the domain's <disk> (PCI address, then bus/target/unit, or
// the serial).
type DiskAddress struct {
	PCIController PCIAddress `json:"pci_controller"`
	BusType       string     `json:"bus_type"`
	Bus           int        `json:"bus"`
	Target        int        `json:"target"`
	Unit          int        `json:"unit"`
	Serial        string     `json:"serial,omitempty"`
	// Dev is the device node, e.g. "/dev/vda".
	Dev string `json:"dev,omitempty"`
}

// DiskInfo is one block device: a disk (a root of /sys/block) or one of its
// partitions.
type DiskInfo struct {
	// Name is the device node, e.g. "/dev/vda1".
	Name      string `json:"name"`
	Partition bool   `json:"partition"`
	// Dependencies are the device nodes this one is built on: the slaves of
	// a device-mapper or md device, the disk of a partition.
	Dependencies []string `json:"dependencies"`
	// Address is set for devices on real (virtual) hardware.
	Address *DiskAddress `json:"address,omitempty"`
	// Alias is the device-mapper name (e.g. "vg0-root").
	Alias string `json:"alias,omitempty"`
}

// FSInfo is one mounted, block-device backed file system with the disks
// it lies on.
type FSInfo struct {
	// Name is the kernel name of the device ("vda1", "dm-0").
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	Type       string `json:"type"`
	// UsedBytes and TotalBytes are absent when statfs failed; total is
	// used + available to unprivileged users, as qemu-ga reports it.
	UsedBytes  *uint64       `json:"used_bytes,omitempty"`
	TotalBytes *uint64       `json:"total_bytes,omitempty"`
	Disks      []DiskAddress `json:"disks"`
}

// FstrimPath is the outcome of FITRIM on one mount point.
type FstrimPath struct {
	Path    string  `json:"path"`
	Minimum *uint64 `json:"minimum,omitempty"`
	Trimmed *uint64 `json:"trimmed,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// SetUserPasswordParams are the params of set_user_password.
type SetUserPasswordParams struct {
	Username string `json:"username"`
	// Password is the plain password, or a crypt(3) hash when Crypted.
	// Newlines and NUL are refused; a crypted hash may not contain ':'.
	Password string `json:"password"`
	Crypted  bool   `json:"crypted"`
}

// SSHKeysParams are the params of the ssh_*_authorized_keys methods
// (ssh_get_authorized_keys takes only Username).
type SSHKeysParams struct {
	Username string   `json:"username"`
	Keys     []string `json:"keys,omitempty"`
	// Reset (ssh_add_authorized_keys) replaces the file's keys with Keys.
	Reset bool `json:"reset,omitempty"`
}

// SSHAuthorizedKeys is the result of ssh_get_authorized_keys.
type SSHAuthorizedKeys struct {
	Keys []string `json:"keys"`
}
