package libvirt

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"text/template"
)

// Port names of the two agent channels and of the test's own shell.
const (
	PortAgent = "org.kvmmanager.agent.0"
	PortQGA   = "org.qemu.guest_agent.0"
	PortShell = "org.kvmtest.shell.0"
)

// Domain describes one test domain.
type Domain struct {
	Name      string
	MemoryMiB int
	CPUs      int
	Kernel    string
	Initrd    string
	Cmdline   string
	Disk      string // qcow2 overlay, the guest's vda
	CDROM     string // ISO in the SCSI CD-ROM (sda); "" for an empty drive
	Console   string // file of the first serial port (kernel console)
	Report    string // file of the second serial port (the admin's report)
	Shell     string // socket QEMU listens on for the test shell's port
	MAC       string // of the user-mode network interface
	// NoAgentDevices leaves out both agent channels and the CD-ROM (the
	// domain `kvmmanager-agentctl setup` is tested on).
	NoAgentDevices bool
}

// The domain runs QEMU as root without relabelling: the overlay's backing
// image lives in a cache that may be under /root (mode 0700), and libvirt
// must not chown it.
var domainTemplate = template.Must(template.New("domain").Funcs(template.FuncMap{"x": xmlText}).Parse(`<domain type='qemu'>
  <name>{{x .Name}}</name>
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>{{.CPUs}}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{{x .Kernel}}</kernel>
    <initrd>{{x .Initrd}}</initrd>
    <cmdline>{{x .Cmdline}}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{{x .Disk}}'/>
      <target dev='vda' bus='virtio'/>
      <serial>kvmtest-root</serial>
    </disk>
{{- if not .NoAgentDevices}}
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      {{- if .CDROM}}
      <source file='{{x .CDROM}}'/>
      {{- end}}
      <target dev='sda' bus='scsi'/>
      <readonly/>
    </disk>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='` + PortAgent + `'/>
    </channel>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='` + PortQGA + `'/>
    </channel>
{{- end}}
{{- if .Shell}}
    <channel type='unix'>
      <source mode='bind' path='{{x .Shell}}'/>
      <target type='virtio' name='` + PortShell + `'/>
    </channel>
{{- end}}
{{- if .MAC}}
    <interface type='user'>
      <mac address='{{x .MAC}}'/>
      <model type='virtio'/>
    </interface>
{{- end}}
    <serial type='file'>
      <source path='{{x .Console}}'/>
      <target port='0'/>
    </serial>
{{- if .Report}}
    <serial type='file'>
      <source path='{{x .Report}}'/>
      <target port='1'/>
    </serial>
{{- end}}
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'>
    <label>+0:+0</label>
  </seclabel>
</domain>
`))

func xmlText(s string) (string, error) {
	var b bytes.Buffer
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// XML returns the domain's libvirt XML.
func (d Domain) XML() ([]byte, error) {
	if d.Name == "" || d.Disk == "" || d.Console == "" || d.Kernel == "" {
		return nil, fmt.Errorf("domain %q: name, disk, console and kernel are required", d.Name)
	}
	if d.MemoryMiB == 0 {
		d.MemoryMiB = 768
	}
	if d.CPUs == 0 {
		d.CPUs = 1
	}
	var b bytes.Buffer
	if err := domainTemplate.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("domain %s XML: %w", d.Name, err)
	}
	return b.Bytes(), nil
}

// LiveXML is what the tests read from `virsh dumpxml`.
type LiveXML struct {
	ID       string       `xml:"id,attr"`
	Channels []ChannelXML `xml:"devices>channel"`
	Disks    []DiskXML    `xml:"devices>disk"`
}

// ChannelXML is a <channel> of a domain.
type ChannelXML struct {
	Type   string `xml:"type,attr"`
	Source struct {
		Mode string `xml:"mode,attr"`
		Path string `xml:"path,attr"`
	} `xml:"source"`
	Target struct {
		Type  string `xml:"type,attr"`
		Name  string `xml:"name,attr"`
		State string `xml:"state,attr"`
	} `xml:"target"`
}

// DiskXML is a <disk> of a domain.
type DiskXML struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Source struct {
		File string `xml:"file,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr"`
	} `xml:"target"`
	ReadOnly *struct{} `xml:"readonly"`
}

// ParseLiveXML parses a domain's XML.
func ParseLiveXML(doc []byte) (LiveXML, error) {
	var d LiveXML
	if err := xml.Unmarshal(doc, &d); err != nil {
		return d, fmt.Errorf("parse domain XML: %w", err)
	}
	return d, nil
}

// Channel returns the channel whose virtio target is name.
func (d LiveXML) Channel(name string) (ChannelXML, bool) {
	for _, c := range d.Channels {
		if c.Target.Type == "virtio" && c.Target.Name == name {
			return c, true
		}
	}
	return ChannelXML{}, false
}

// CDROMs returns the domain's CD-ROM drives.
func (d LiveXML) CDROMs() []DiskXML {
	var out []DiskXML
	for _, disk := range d.Disks {
		if disk.Device == "cdrom" {
			out = append(out, disk)
		}
	}
	return out
}
