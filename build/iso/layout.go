package iso

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FileName is the name of the installer disc under dist/.
const FileName = "kvmmanager-guest-agent.iso"

// RootFiles maps the files at the root of the disc (other than the
// generated readme.txt and sha256sums.txt) to their source in the repository.
var RootFiles = []struct{ Disc, Src string }{
	{"install.sh", "installers/install.sh"},
	{"install-debian.sh", "installers/install-debian.sh"},
	{"install-rhel.sh", "installers/install-rhel.sh"},
	{"install-alpine.sh", "installers/install-alpine.sh"},
	{"uninstall.sh", "installers/uninstall.sh"},
	{"install-common.sh", "installers/install-common.sh"}, // sourced by the scripts above
	{"config.json", "packaging/config.json"},
	{"kvmmanager-agent.service", "packaging/systemd/kvmmanager-agent.service"},
	{"60-kvmmanager-agent.rules", "packaging/udev/60-kvmmanager-agent.rules"},
	{"kvmmanager-agent.initd", "packaging/openrc/kvmmanager-agent.initd"},
	{"kvmmanager-agent.confd", "packaging/openrc/kvmmanager-agent.confd"},
	{"install-windows.cmd", "installers/install-windows.cmd"},
	{"uninstall-windows.cmd", "installers/uninstall-windows.cmd"},
}

// Package is a built package to put on the disc.
type Package struct {
	Arch   string // Go arch: amd64, arm64
	Format string // deb, rpm, apk
	Path   string // local file
}

// Inputs is what the disc is made of.
type Inputs struct {
	Root    string            // repository root
	Version string            // shown in readme.txt
	Agents  map[string]string // Go arch -> agent binary
	// WindowsAgents maps a Go arch to the Windows agent (kvmmanager-agent.exe).
	WindowsAgents map[string]string
	Packages      []Package
}

// Layout returns every entry of the installer disc: the root files, the
// agent per architecture at linux-<arch>/kvmmanager-agent and
// windows-<arch>/kvmmanager-agent.exe, the packages at
// packages/<arch>/kvmmanager-agent.<format>, readme.txt, and sha256sums.txt
// over all of them (check with `sha256sum -c sha256sums.txt` on the disc).
func Layout(in Inputs) ([]Entry, error) {
	var entries []Entry
	for _, f := range RootFiles {
		src := filepath.Join(in.Root, filepath.FromSlash(f.Src))
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("iso file %s: %w", f.Disc, err)
		}
		entries = append(entries, Entry{Path: f.Disc, Src: src})
	}
	arches := make([]string, 0, len(in.Agents))
	for a := range in.Agents {
		arches = append(arches, a)
	}
	sort.Strings(arches)
	for _, a := range arches {
		entries = append(entries, Entry{Path: "linux-" + a + "/kvmmanager-agent", Src: in.Agents[a]})
	}
	winArches := make([]string, 0, len(in.WindowsAgents))
	for a := range in.WindowsAgents {
		winArches = append(winArches, a)
	}
	sort.Strings(winArches)
	for _, a := range winArches {
		entries = append(entries, Entry{Path: "windows-" + a + "/kvmmanager-agent.exe", Src: in.WindowsAgents[a]})
	}
	for _, p := range in.Packages {
		entries = append(entries, Entry{Path: "packages/" + p.Arch + "/kvmmanager-agent." + p.Format, Src: p.Path})
	}
	entries = append(entries, Entry{Path: "readme.txt", Data: []byte(readme(in.Version, arches, winArches, in.Packages))})

	sums, err := checksums(entries)
	if err != nil {
		return nil, err
	}
	entries = append(entries, Entry{Path: "sha256sums.txt", Data: sums})
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries, nil
}

func checksums(entries []Entry) ([]byte, error) {
	lines := make([]string, 0, len(entries))
	for _, e := range entries {
		b, err := e.Contents()
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+e.Path+"\n")
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	return []byte(strings.Join(lines, "")), nil
}

func readme(version string, arches, winArches []string, pkgs []Package) string {
	var b strings.Builder
	fmt.Fprintf(&b, "KVM Manager guest agent %s\n", version)
	b.WriteString(`
This disc installs kvmmanager-agent in a Linux or Windows VM. The agent
answers the KVM Manager host over the virtio-serial port
org.kvmmanager.agent.0.

` + installText() + `

Contents:
    readme.txt, sha256sums.txt         this file; checksums ("sha256sum -c sha256sums.txt")
    install*.sh, uninstall.sh          installers
    install-common.sh                  their shared helpers (sourced, not run)
    config.json                        default configuration (/etc/kvmmanager-agent/config.json)
    kvmmanager-agent.service           systemd unit
    60-kvmmanager-agent.rules          udev rule starting the unit when the port appears
    kvmmanager-agent.initd, .confd     OpenRC service and its options
    install-windows.cmd                Windows installer (as Administrator)
    uninstall-windows.cmd              Windows removal
`)
	for _, a := range arches {
		fmt.Fprintf(&b, "    %-34s static agent binary for %s\n", "linux-"+a+"/kvmmanager-agent", a)
	}
	for _, a := range winArches {
		fmt.Fprintf(&b, "    %-34s Windows agent and service for %s\n", "windows-"+a+"/kvmmanager-agent.exe", a)
	}
	for _, p := range pkgs {
		name := fmt.Sprintf("packages/%s/kvmmanager-agent.%s", p.Arch, p.Format)
		fmt.Fprintf(&b, "    %-34s %s package (%s)\n", name, p.Format, filepath.Base(p.Path))
	}
	b.WriteString("\n" + windowsReadme)
	return b.String()
}

// windowsReadme is readme.txt's part for Windows guests.
const windowsReadme = `Windows 10/11 and Server (amd64, arm64): with the virtio-win vioserial
driver installed, run as Administrator (cmd.exe or PowerShell, no execution
policy change needed; D: is the CD drive):

    D:\install-windows.cmd                installs and starts the service
    D:\uninstall-windows.cmd [/purge]     removes it (/purge also the config)

The service is "kvmmanager-agent"; its config is
%ProgramData%\kvmmanager-agent\config.json. Windows shows the names on this
disc in upper case (INSTALL-WINDOWS.CMD); that is the same file.
`
