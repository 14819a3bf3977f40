package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func writeAgentInfo(w io.Writer, r protocol.AgentInfo) error {
	t := newTable(w)
	fmt.Fprintf(t, "Version\t%s\n", r.Version)
	fmt.Fprintf(t, "Protocol\t%s\n", r.ProtocolVersion)
	fmt.Fprintf(t, "Platform\t%s\n", r.Platform)
	fmt.Fprintf(t, "Methods\t%s\n", strings.Join(r.Capabilities, ", "))
	return t.Flush()
}

func writeSystemInfo(w io.Writer, r protocol.SystemInfo) error {
	t := newTable(w)
	os := strings.TrimSpace(r.OSName + " " + r.OSVersion)
	fmt.Fprintf(t, "OS\t%s (%s)\n", os, r.OSType)
	fmt.Fprintf(t, "Kernel\t%s\n", r.KernelVersion)
	fmt.Fprintf(t, "Hostname\t%s\n", r.Hostname)
	fmt.Fprintf(t, "Architecture\t%s\n", r.Architecture)
	fmt.Fprintf(t, "CPUs\t%d\n", r.CPUCount)
	fmt.Fprintf(t, "Memory\t%s (%d kB)\n", humanBytes(r.TotalMemoryKB*1024), r.TotalMemoryKB)
	fmt.Fprintf(t, "Uptime\t%s\n", (time.Duration(r.UptimeSeconds) * time.Second).String())
	return t.Flush()
}

func writeNetworkInfo(w io.Writer, r protocol.NetworkInfo) error {
	t := newTable(w)
	fmt.Fprintf(t, "NAME\tSTATE\tMTU\tMAC\tADDRESSES\n")
	for _, i := range r.Interfaces {
		addrs := append(append([]string{}, i.IPv4Addresses...), i.IPv6Addresses...)
		a := strings.Join(addrs, " ")
		if a == "" {
			a = "-"
		}
		mac := i.MACAddress
		if mac == "" {
			mac = "-"
		}
		fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%s\n", i.Name, i.State, i.MTU, mac, a)
	}
	return t.Flush()
}

func writeDiskUsage(w io.Writer, r protocol.DiskUsage) error {
	t := newTable(w)
	fmt.Fprintf(t, "MOUNT\tDEVICE\tTYPE\tSIZE\tUSED\tAVAIL\tUSE%%\n")
	for _, f := range r.Filesystems {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s%%\n", f.MountPoint, f.Device, f.FSType,
			humanBytes(f.TotalBytes), humanBytes(f.UsedBytes), humanBytes(f.AvailableBytes),
			strconv.FormatFloat(f.UsedPercent, 'f', -1, 64))
	}
	return t.Flush()
}

// humanBytes renders n in binary units with one decimal, like df -h.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[i])
}

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func decodeBase64(path string, r protocol.FileReadResult) ([]byte, error) {
	if r.Encoding != protocol.EncodingBase64 {
		return nil, &localError{fmt.Errorf("read %s: asked for base64, agent answered %q", path, r.Encoding)}
	}
	b, err := base64.StdEncoding.DecodeString(r.Content)
	if err != nil {
		return nil, &localError{fmt.Errorf("read %s: decode base64 content: %w", path, err)}
	}
	return b, nil
}
