//go:build vmtest

package distro_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/distro"
)

func TestParseReport(t *testing.T) {
	raw := "KVMTEST boot=1\r\n" +
		"KVMTEST-BEGIN mount\n\nKVMTEST-END mount rc=0\n" +
		"KVMTEST-BEGIN install\nInstalling kvmmanager-agent\nKVMTEST-END other rc=9\nDone.\n\nKVMTEST-END install rc=3\n" +
		"KVMTEST admin-done boot=1\n" +
		"KVMTEST-BEGIN journal\n-- No entries --\n"
	r := distro.ParseReport([]byte(raw))
	if want := []string{"boot=1", "admin-done boot=1"}; !reflect.DeepEqual(r.Lines, want) {
		t.Errorf("Lines = %q, want %q", r.Lines, want)
	}
	want := []distro.Section{
		{Name: "mount", Output: "", RC: 0},
		// An END marker of another name is output, not the end.
		{Name: "install", Output: "Installing kvmmanager-agent\nKVMTEST-END other rc=9\nDone.", RC: 3},
	}
	if !reflect.DeepEqual(r.Sections, want) {
		t.Errorf("Sections = %+v, want %+v", r.Sections, want)
	}
	if r.Open == nil || r.Open.Name != "journal" {
		t.Errorf("Open = %+v, want the unfinished journal block", r.Open)
	}
	if _, ok := r.Section("journal"); ok {
		t.Error("an unfinished block is returned by Section")
	}
	if s, ok := r.Section("install"); !ok || s.RC != 3 {
		t.Errorf("Section(install) = %+v, %v", s, ok)
	}
	if !r.Has("admin-done boot=1") || r.Has("admin-done boot=2") {
		t.Error("Has does not match whole lines")
	}
}

func TestParseJournal(t *testing.T) {
	out := "-- No entries --\n" +
		"1700000000.123456 kvmtest kvmmanager-agent[312]: time=2024-01-01T00:00:00Z level=WARN msg=\"Virtio-serial device not found\" retry=1s\n" +
		"-- Boot 0123 --\n" +
		"1700000004.500000 kvmtest systemd[1]: Started kvmmanager-agent.service - KVM Manager guest agent.\n"
	got := distro.ParseJournal(out)
	want := []distro.JournalEntry{
		{Time: 1700000000.123456, Message: "time=2024-01-01T00:00:00Z level=WARN msg=\"Virtio-serial device not found\" retry=1s"},
		{Time: 1700000004.5, Message: "Started kvmmanager-agent.service - KVM Manager guest agent."},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseJournal = %+v, want %+v", got, want)
	}
}

func TestParseSlog(t *testing.T) {
	out := "time=2026-11-26T02:01:57.5Z level=INFO msg=\"kvmmanager-agent starting\" version=1.0.0\n" +
		"panic: something\n" +
		"time=2026-11-26T02:02:00Z level=WARN msg=\"Virtio-serial device not found\"\n"
	got := distro.ParseSlog(out)
	want := []distro.JournalEntry{
		{Time: 1795658517.5, Message: "level=INFO msg=\"kvmmanager-agent starting\" version=1.0.0"},
		{Time: 1795658520, Message: "level=WARN msg=\"Virtio-serial device not found\""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSlog = %+v, want %+v", got, want)
	}
}

func TestSystemdProperties(t *testing.T) {
	got := distro.SystemdProperties("NRestarts=0\nWantedBy=a.device b.target\n\n")
	want := map[string]string{"NRestarts": "0", "WantedBy": "a.device b.target"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SystemdProperties = %v, want %v", got, want)
	}
}

func TestSystemdUnits(t *testing.T) {
	got := distro.SystemdUnits(`"sys-devices-pci0000:00-virtio\\x2dports-vport2p1.device" multi-user.target`)
	want := []string{`sys-devices-pci0000:00-virtio\x2dports-vport2p1.device`, "multi-user.target"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SystemdUnits = %q, want %q", got, want)
	}
}

func TestCalmLog(t *testing.T) {
	entry := func(at float64, msg string) distro.JournalEntry { return distro.JournalEntry{Time: at, Message: msg} }
	tests := []struct {
		name    string
		entries []distro.JournalEntry
		loop    bool
	}{
		{"empty", nil, false},
		{"different messages at once", []distro.JournalEntry{entry(0, "starting"), entry(0.1, "config loaded"), entry(0.2, "waiting for port")}, false},
		{"retries with backoff", []distro.JournalEntry{
			entry(0, "time=1 msg=not found retry=5s"), entry(5, "time=2 msg=not found retry=10s"), entry(15, "time=3 msg=not found retry=30s"),
		}, false},
		{"restart loop", []distro.JournalEntry{
			entry(0, "kvmmanager-agent[100]: Started"), entry(0.5, "kvmmanager-agent[101]: Started"),
		}, true},
		{"busy retry", []distro.JournalEntry{
			entry(10, "time=1.2 msg=open failed after 12ms"), entry(10.2, "time=1.4 msg=open failed after 7ms"),
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := calmLog(tt.entries, 3)
			if (err != nil) != tt.loop {
				t.Errorf("calmLog = %v, want loop %v", err, tt.loop)
			}
			if err != nil && !strings.Contains(err.Error(), "logged again") {
				t.Errorf("error %q does not say what repeated", err)
			}
		})
	}
}

func TestSpecKeysDiffer(t *testing.T) {
	seen := map[string]string{}
	for _, spec := range distro.Specs {
		k, err := spec.Key()
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := spec.Key(); again != k {
			t.Errorf("%s: key %s then %s, want it stable", spec.Name, k, again)
		}
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share the key %s", spec.Name, other, k)
		}
		seen[k] = spec.Name
	}
	// Any change of what goes into an image changes its key.
	base, _ := distro.Debian12Systemd.Key()
	more := distro.Debian12Systemd
	more.Packages = append(append([]string(nil), more.Packages...), "less")
	file := distro.Debian12Systemd
	file.Files = []distro.File{{Path: "etc/motd", Mode: 0o644, Data: "hello\n"}}
	for name, s := range map[string]distro.Spec{"one more package": more, "one more file": file} {
		if k, _ := s.Key(); k == base {
			t.Errorf("%s: key unchanged (%s)", name, k)
		}
	}
}
