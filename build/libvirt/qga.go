package libvirt

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The reply types of the QEMU guest agent commands KVM Manager sends through
// `virsh qemu-agent-command`, as qga/qapi-schema.json defines them. Decoding
// is strict about types; fields the host does not read are not listed.

// QGAInfo is guest-info's return.
type QGAInfo struct {
	Version           string `json:"version"`
	SupportedCommands []struct {
		Name            string `json:"name"`
		Enabled         bool   `json:"enabled"`
		SuccessResponse bool   `json:"success-response"`
	} `json:"supported_commands"`
}

// QGAOSInfo is guest-get-osinfo's return.
type QGAOSInfo struct {
	KernelRelease string `json:"kernel-release"`
	KernelVersion string `json:"kernel-version"`
	Machine       string `json:"machine"`
	ID            string `json:"id"`
	Name          string `json:"name"`
	PrettyName    string `json:"pretty-name"`
	Version       string `json:"version"`
	VersionID     string `json:"version-id"`
}

// QGAHostName is guest-get-host-name's return.
type QGAHostName struct {
	HostName string `json:"host-name"`
}

// QGAVCPU is one element of guest-get-vcpus' return.
type QGAVCPU struct {
	LogicalID  int64 `json:"logical-id"`
	Online     bool  `json:"online"`
	CanOffline *bool `json:"can-offline"`
}

// QGAInterface is one element of guest-network-get-interfaces' return.
type QGAInterface struct {
	Name            string `json:"name"`
	HardwareAddress string `json:"hardware-address"`
	IPAddresses     []struct {
		Type    string `json:"ip-address-type"`
		Address string `json:"ip-address"`
		Prefix  int64  `json:"prefix"`
	} `json:"ip-addresses"`
	Statistics *struct {
		RxBytes   uint64 `json:"rx-bytes"`
		RxPackets uint64 `json:"rx-packets"`
		RxErrs    uint64 `json:"rx-errs"`
		RxDropped uint64 `json:"rx-dropped"`
		TxBytes   uint64 `json:"tx-bytes"`
		TxPackets uint64 `json:"tx-packets"`
		TxErrs    uint64 `json:"tx-errs"`
		TxDropped uint64 `json:"tx-dropped"`
	} `json:"statistics"`
}

// QGAFS is one element of guest-get-fsinfo's return.
type QGAFS struct {
	Name       string  `json:"name"`
	Mountpoint string  `json:"mountpoint"`
	Type       string  `json:"type"`
	UsedBytes  *uint64 `json:"used-bytes"`
	TotalBytes *uint64 `json:"total-bytes"`
	Disk       []struct {
		PCIController struct {
			Domain   int64 `json:"domain"`
			Bus      int64 `json:"bus"`
			Slot     int64 `json:"slot"`
			Function int64 `json:"function"`
		} `json:"pci-controller"`
		BusType string `json:"bus-type"`
		Bus     int64  `json:"bus"`
		Target  int64  `json:"target"`
		Unit    int64  `json:"unit"`
		Serial  string `json:"serial"`
		Dev     string `json:"dev"`
	} `json:"disk"`
}

// QGAExec is guest-exec's return.
type QGAExec struct {
	PID int64 `json:"pid"`
}

// QGAExecStatus is guest-exec-status's return.
type QGAExecStatus struct {
	Exited       bool    `json:"exited"`
	ExitCode     *int64  `json:"exitcode"`
	Signal       *int64  `json:"signal"`
	OutData      *string `json:"out-data"`
	ErrData      *string `json:"err-data"`
	OutTruncated bool    `json:"out-truncated"`
	ErrTruncated bool    `json:"err-truncated"`
}

// QGACPUStats is one element of guest-get-cpustats' return (type "linux").
type QGACPUStats struct {
	Type   string  `json:"type"`
	CPU    int64   `json:"cpu"`
	User   *uint64 `json:"user"`
	Nice   *uint64 `json:"nice"`
	System *uint64 `json:"system"`
	Idle   *uint64 `json:"idle"`
}

// QGADiskStats is one element of guest-get-diskstats' return.
type QGADiskStats struct {
	Name  string `json:"name"`
	Major uint64 `json:"major"`
	Minor uint64 `json:"minor"`
	Stats struct {
		ReadSectors  *uint64 `json:"read-sectors"`
		ReadIOs      *uint64 `json:"read-ios"`
		WriteSectors *uint64 `json:"write-sectors"`
		WriteIOs     *uint64 `json:"write-ios"`
	} `json:"stats"`
}

// QGAUser is one element of guest-get-users' return.
type QGAUser struct {
	User      string  `json:"user"`
	Domain    string  `json:"domain"`
	LoginTime float64 `json:"login-time"`
}

// QGATimezone is guest-get-timezone's return.
type QGATimezone struct {
	Zone   string `json:"zone"`
	Offset int64  `json:"offset"`
}

// QGAFileOpen, QGAFileRead and QGAFileWrite are the guest-file-* returns.
type (
	QGAFileRead struct {
		Count  int64  `json:"count"`
		BufB64 string `json:"buf-b64"`
		EOF    bool   `json:"eof"`
	}
	QGAFileWrite struct {
		Count int64 `json:"count"`
		EOF   bool  `json:"eof"`
	}
)

// DecodeReturn decodes a `virsh qemu-agent-command` output, {"return": X},
// into v, strictly: X must have v's types, and the reply nothing but "return".
func DecodeReturn(out string, v any) error {
	var reply struct {
		Return json.RawMessage `json:"return"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reply); err != nil {
		return fmt.Errorf("decode reply %q: %w", shorten(out), err)
	}
	if reply.Return == nil {
		return fmt.Errorf("reply %q has no return", shorten(out))
	}
	if err := json.Unmarshal(reply.Return, v); err != nil {
		return fmt.Errorf("decode return %q as %T: %w", shorten(out), v, err)
	}
	return nil
}

func shorten(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
