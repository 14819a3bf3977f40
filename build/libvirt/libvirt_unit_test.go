package libvirt

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDomainXML(t *testing.T) {
	d := Domain{Name: "vm<1>", Kernel: "/k", Initrd: "/i", Cmdline: "root=/dev/vda console=ttyS0", Disk: "/d/disk.qcow2",
		CDROM: "/d/agent.iso", Console: "/d/console.log", Report: "/d/report.log", Shell: "/d/shell.sock", MAC: "52:54:00:00:00:01"}
	doc, err := d.XML()
	if err != nil {
		t.Fatal(err)
	}
	x, err := ParseLiveXML(doc)
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	for _, want := range []string{"<domain type='qemu'>", "<name>vm&lt;1&gt;</name>", "<seclabel type='static' model='dac' relabel='no'>",
		"<label>+0:+0</label>", "<kernel>/k</kernel>", "<interface type='user'>"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("XML lacks %q:\n%s", want, doc)
		}
	}
	for _, port := range []string{PortAgent, PortQGA, PortShell} {
		c, ok := x.Channel(port)
		if !ok || c.Source.Mode != "bind" {
			t.Errorf("channel %s: %+v %v", port, c, ok)
		}
	}
	if c, _ := x.Channel(PortShell); c.Source.Path != "/d/shell.sock" {
		t.Errorf("shell socket %q", c.Source.Path)
	}
	if cds := x.CDROMs(); len(cds) != 1 || cds[0].Source.File != "/d/agent.iso" || cds[0].ReadOnly == nil {
		t.Errorf("CD-ROMs %+v", cds)
	}

	d.NoAgentDevices, d.Shell = true, ""
	doc, err = d.XML()
	if err != nil {
		t.Fatal(err)
	}
	x, _ = ParseLiveXML(doc)
	if len(x.Channels) != 0 || len(x.CDROMs()) != 0 {
		t.Errorf("NoAgentDevices: channels %+v, CD-ROMs %+v", x.Channels, x.CDROMs())
	}
	if _, err := (Domain{Name: "x"}).XML(); err == nil {
		t.Error("a domain without disk and kernel gave XML")
	}
}

func TestShapes(t *testing.T) {
	tests := []struct {
		name  string
		shape []string
		want  []string
	}{
		{"json", JSONShape(`{"return":[{"name":"eth0","ip-addresses":[{"prefix":24}]},{"name":"lo","statistics":null}]}`),
			[]string{":object", ".return:array", ".return[]:object", ".return[].ip-addresses:array", ".return[].ip-addresses[]:object",
				".return[].ip-addresses[].prefix:number", ".return[].name:string", ".return[].statistics:null"}},
		{"not json", JSONShape("error: agent not responding"), []string{"not JSON"}},
		{"guestinfo", KeyShape("user.count          : 1\nuser.0.name         : kvmuser\nfs.0.disk.0.alias   : vda\nfs.1.disk.0.alias   : vda\nhostname            : h\n"),
			[]string{"fs.N.disk.N.alias", "hostname", "user.N.name", "user.count"}},
		{"table", TableShape(" Name       MAC address          Protocol     Address\n-------------------------------------------------------------------------------\n lo         00:00:00:00:00:00    ipv4         127.0.0.1/8\n"),
			[]string{"column Name", "column MAC address", "column Protocol", "column Address"}},
	}
	for _, tt := range tests {
		if !slices.Equal(slices.Sorted(slices.Values(tt.shape)), slices.Sorted(slices.Values(tt.want))) {
			t.Errorf("%s: shape %q, want %q", tt.name, tt.shape, tt.want)
		}
	}
	_, rows := Table(" Mountpoint   Name   Type   Target\n------------------------------------\n /            vda    ext4   vda\n")
	if len(rows) != 1 || !slices.Equal(rows[0], []string{"/", "vda", "ext4", "vda"}) {
		t.Errorf("rows %q", rows)
	}
}

func TestCompare(t *testing.T) {
	ref := &Transcript{Kind: KindReference, Steps: []Step{
		{Name: "guestinfo", Shape: []string{"hostname", "os.id"}},
		{Name: "shutdown --mode agent", Failed: []string{"virsh failed"}},
		{Name: "only-ref"},
	}}
	ours := &Transcript{Kind: KindOurs, Steps: []Step{
		{Name: "guestinfo", Shape: []string{"hostname", "users.count"}},
		{Name: "shutdown --mode agent"},
	}}
	// Documented is the real list TestLibvirt reads later in this binary:
	// put back what was there.
	const key = "shutdown --mode agent: fails with qemu-ga only"
	saved, had := Documented[key]
	Documented[key] = "qemu-ga needs D-Bus"
	defer func() {
		if had {
			Documented[key] = saved
		} else {
			delete(Documented, key)
		}
	}()
	var got []string
	for _, d := range Compare(ref, ours) {
		got = append(got, d.Key()+" => "+d.Documented)
	}
	want := []string{
		"guestinfo: only qemu-ga has os.id => ",
		"guestinfo: only ours has users.count => ",
		"shutdown --mode agent: fails with qemu-ga only => qemu-ga needs D-Bus",
		"only-ref: only qemu-ga ran it => ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("differences:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	md := string(Markdown(ref, ours, Compare(ref, ours)))
	for _, w := range []string{"| shutdown --mode agent | FAIL: virsh failed | pass |", "**UNDOCUMENTED**", "qemu-ga needs D-Bus"} {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q:\n%s", w, md)
		}
	}
}

// TestShell runs the host side against a fake guest shell that first
// answers a request the host gave up on (which must be skipped).
func TestShell(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "shell.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for n := 0; ; n++ {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			id, b64, _ := strings.Cut(strings.TrimSpace(line), " ")
			script, _ := base64.StdEncoding.DecodeString(b64)
			if n == 0 {
				continue // the first request times out
			}
			fmt.Fprintf(c, "KVMTEST-SHELL %d 0 %s\n", n-1, base64.StdEncoding.EncodeToString([]byte("stale")))
			fmt.Fprintf(c, "noise\nKVMTEST-SHELL %s 3 %s\n", id, base64.StdEncoding.EncodeToString([]byte("ran: "+string(script))))
		}
	}()
	sh, err := DialShell(t.Context(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	if _, err := sh.Run("first", 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("first request: %v, want no answer", err)
	}
	r, err := sh.Run("echo hi", 5*time.Second)
	if err != nil || r.Code != 3 || r.Output != "ran: echo hi" {
		t.Fatalf("Run: %+v, %v", r, err)
	}
}
