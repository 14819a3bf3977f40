package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// channelXML is the libvirt device that gives a domain the agent's port.
// Without a source path libvirt picks one under channelDir.
const channelXML = `<channel type='unix'>
  <source mode='bind'/>
  <target type='virtio' name='` + protocol.PortName + `'/>
</channel>
`

// channelDir is where libvirt's system instance puts channel sockets.
const channelDir = "/var/lib/libvirt/qemu/channel/target"

func writeAttachHint(w io.Writer, domain string) {
	fmt.Fprintf(w, `To add the agent port to %[1]s (takes effect at its next start; add --live to
attach it to the running domain too):
  %[2]s libvirt-xml > agent-channel.xml
  virsh attach-device %[1]s agent-channel.xml --config
or paste the element inside <devices> with: virsh edit %[1]s
Then reach the agent with: %[2]s --domain %[1]s ping
`, domain, prog)
}

// locator finds the agent socket of a libvirt domain.
type locator struct {
	// dumpXML returns the domain's XML (virsh dumpxml).
	dumpXML func(ctx context.Context, domain string) ([]byte, error)
	// root is prefixed to channelDir (tests use a temporary directory).
	root string
}

func systemLocator() locator {
	return locator{dumpXML: virshDumpXML, root: "/"}
}

func virshDumpXML(ctx context.Context, domain string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "virsh", "dumpxml", "--domain", domain)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("virsh dumpxml %s: %w: %s", domain, err, msg)
		}
		return nil, fmt.Errorf("virsh dumpxml %s: %w", domain, err)
	}
	return out, nil
}

// socketFor returns the agent socket of domain: the source path of its
// channel named org.kvmmanager.agent.0 in the live XML, else the socket
// libvirt creates for a running domain at
// channelDir/domain-ID-NAME/org.kvmmanager.agent.0 (NAME cut to 20
// characters, as libvirt does; the highest ID wins), else the older
// channelDir/NAME.org.kvmmanager.agent.0.
func (l locator) socketFor(ctx context.Context, domain string) (string, error) {
	var reasons []string
	if out, err := l.dumpXML(ctx, domain); err != nil {
		reasons = append(reasons, err.Error())
	} else if path, err := channelSource(out); err != nil {
		reasons = append(reasons, fmt.Sprintf("domain %s: %v", domain, err))
	} else {
		return path, nil
	}

	dir := filepath.Join(l.root, channelDir)
	pattern := filepath.Join(dir, "domain-*-"+globEscape(shortName(domain)), protocol.PortName)
	if path, ok := newestDomainSocket(pattern, shortName(domain)); ok {
		return path, nil
	}
	legacy := filepath.Join(dir, domain+"."+protocol.PortName)
	if isSocket(legacy) {
		return legacy, nil
	}
	reasons = append(reasons, fmt.Sprintf("no socket at %s or %s", pattern, legacy))
	return "", fmt.Errorf("find the agent socket of domain %s: %s", domain, strings.Join(reasons, "; "))
}

type domainXML struct {
	ID       string `xml:"id,attr"`
	Channels []struct {
		Type   string `xml:"type,attr"`
		Source struct {
			Path string `xml:"path,attr"`
		} `xml:"source"`
		Target struct {
			Type string `xml:"type,attr"`
			Name string `xml:"name,attr"`
		} `xml:"target"`
	} `xml:"devices>channel"`
}

var errNoChannel = errors.New("no <channel> with target name " + protocol.PortName + " (see: " + prog + " libvirt-xml)")

// channelSource returns the socket path of the agent channel in a domain's
// XML.
func channelSource(doc []byte) (string, error) {
	var d domainXML
	if err := xml.Unmarshal(doc, &d); err != nil {
		return "", fmt.Errorf("parse domain XML: %w", err)
	}
	for _, c := range d.Channels {
		if c.Type != "unix" || c.Target.Type != "virtio" || c.Target.Name != protocol.PortName {
			continue
		}
		if c.Source.Path == "" {
			if d.ID == "" {
				return "", errors.New("the agent channel has no socket path yet: the domain is not running")
			}
			return "", errors.New("the agent channel has no socket path")
		}
		return c.Source.Path, nil
	}
	return "", errNoChannel
}

// shortName is libvirt's short domain name used in directory names: the
// first 20 characters.
func shortName(name string) string {
	r := []rune(name)
	if len(r) > 20 {
		r = r[:20]
	}
	return string(r)
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// newestDomainSocket returns the socket matching pattern whose directory
// is exactly domain-ID-short (the glob's * also matches "3-other" for a
// domain named other-short) with the highest ID: directories of earlier
// runs may be left behind.
func newestDomainSocket(pattern, short string) (string, bool) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return "", false
	}
	type cand struct {
		id   int
		path string
	}
	var cands []cand
	for _, m := range matches {
		if !isSocket(m) {
			continue
		}
		dir := filepath.Base(filepath.Dir(m)) // domain-ID-NAME
		idText, name, _ := strings.Cut(strings.TrimPrefix(dir, "domain-"), "-")
		id, err := strconv.Atoi(idText)
		if err != nil || name != short {
			continue
		}
		cands = append(cands, cand{id, m})
	}
	if len(cands) == 0 {
		return "", false
	}
	best := slices.MaxFunc(cands, func(a, b cand) int { return a.id - b.id })
	return best.path, true
}

func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}
