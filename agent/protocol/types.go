package protocol

// PingResult is the result of ping.
type PingResult struct {
	Pong      bool  `json:"pong"`
	Timestamp int64 `json:"timestamp"` // Unix seconds
}

// AgentInfo is the result of get_agent_info.
type AgentInfo struct {
	Version         string   `json:"version"`
	ProtocolVersion string   `json:"protocol_version"`
	Platform        string   `json:"platform"`
	Capabilities    []string `json:"capabilities"`
}

// SystemInfo is the result of get_system_info.
type SystemInfo struct {
	OSType        string `json:"os_type"`
	OSName        string `json:"os_name"`
	OSVersion     string `json:"os_version"`
	KernelVersion string `json:"kernel_version"`
	Hostname      string `json:"hostname"`
	Architecture  string `json:"architecture"`
	CPUCount      int    `json:"cpu_count"`
	TotalMemoryKB uint64 `json:"total_memory_kb"`
	UptimeSeconds uint64 `json:"uptime_seconds"`
}

// NetworkInfo is the result of get_network_info.
type NetworkInfo struct {
	Interfaces []Interface `json:"interfaces"`
}

// Interface describes one network interface.
type Interface struct {
	Name          string   `json:"name"`
	MACAddress    string   `json:"mac_address"`
	IPv4Addresses []string `json:"ipv4_addresses"` // "a.b.c.d/len"
	IPv6Addresses []string `json:"ipv6_addresses"` // "x::y/len"
	State         string   `json:"state"`          // operstate: "up", "down", "unknown", ...
	MTU           int      `json:"mtu"`
}

// DiskUsage is the result of get_disk_usage.
type DiskUsage struct {
	Filesystems []Filesystem `json:"filesystems"`
}

// Filesystem describes one mounted filesystem.
type Filesystem struct {
	MountPoint     string  `json:"mount_point"`
	Device         string  `json:"device"`
	FSType         string  `json:"fs_type"`
	TotalBytes     uint64  `json:"total_bytes"`
	UsedBytes      uint64  `json:"used_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedPercent    float64 `json:"used_percent"` // as df computes it: ceil(used*100/(used+available))
}

// ExecParams are the params of exec_command. Pointer fields are optional;
// nil means the documented default.
type ExecParams struct {
	Command          string   `json:"command"`
	Args             []string `json:"args,omitempty"`
	TimeoutSeconds   *int     `json:"timeout_seconds,omitempty"` // default 30, capped by command_timeout_seconds
	CaptureOutput    *bool    `json:"capture_output,omitempty"`  // default true
	WorkingDirectory string   `json:"working_directory,omitempty"`
}

// ExecResult is the result of exec_command. It is also the data of a
// timeout error (-32003), carrying the output collected before the kill.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	ExecutionTimeMS int64  `json:"execution_time_ms"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
}

// Encodings of file content.
const (
	EncodingUTF8   = "utf8"
	EncodingBase64 = "base64"
)

// FileReadParams are the params of file_read.
type FileReadParams struct {
	Path     string `json:"path"`
	Encoding string `json:"encoding,omitempty"` // "utf8" (default) or "base64"
	// Protocol 1.1: with Offset or Length the result is a chunk
	// (FileReadChunkResult) and the file may be of any size.
	Offset *int64 `json:"offset,omitempty"`
	Length *int64 `json:"length,omitempty"` // default and maximum max_file_size_bytes
}

// FileReadResult is the result of file_read.
type FileReadResult struct {
	Content   string `json:"content"`
	SizeBytes int64  `json:"size_bytes"`
	Encoding  string `json:"encoding"`
}

// FileWriteParams are the params of file_write.
type FileWriteParams struct {
	Path        string `json:"path"`
	Content     string `json:"content"`
	Encoding    string `json:"encoding,omitempty"` // "utf8" (default) or "base64"
	CreateDirs  bool   `json:"create_dirs,omitempty"`
	Permissions string `json:"permissions,omitempty"` // octal, e.g. "0644"

	// Protocol 1.1 uploads (chunks; FileWriteChunkResult). Offset starts
	// an upload (0, no UploadID) or continues one; the chunk replaces the
	// upload's bytes from Offset on (offset = size appends, a smaller one
	// truncates there first: a retried chunk is harmless).
	Offset   *int64 `json:"offset,omitempty"`
	UploadID string `json:"upload_id,omitempty"`
	// Commit verifies the upload (SizeBytes, SHA256 when given) and
	// renames it over Path; Abort removes it.
	Commit    bool   `json:"commit,omitempty"`
	Abort     bool   `json:"abort,omitempty"`
	SizeBytes *int64 `json:"size_bytes,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// FileWriteResult is the result of file_write.
type FileWriteResult struct {
	BytesWritten int64  `json:"bytes_written"`
	Path         string `json:"path"`
}

// PowerParams are the params of shutdown and reboot.
type PowerParams struct {
	TimeoutSeconds *int `json:"timeout_seconds,omitempty"` // default 60
	Force          bool `json:"force,omitempty"`
}

// PowerResult is the result of shutdown and reboot.
type PowerResult struct {
	Initiated bool   `json:"initiated"`
	Message   string `json:"message"`
}

// SyncParams are the params of sync; its result is ID itself.
type SyncParams struct {
	ID int64 `json:"id"`
}
