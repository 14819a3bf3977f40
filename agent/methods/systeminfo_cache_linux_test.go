package methods

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// get_system_info caches os-release but answers exactly: every kind of
// change to the file shows in the next answer.
func TestSystemInfoSeesOSReleaseChanges(t *testing.T) {
	root := fakeHost(t, map[string]string{
		"proc/meminfo":                  "MemTotal: 1024 kB\n",
		"proc/uptime":                   "5.0 1.0\n",
		"sys/devices/system/cpu/online": "0\n",
		"usr/lib/os-release":            "NAME=Lib\nVERSION=1\n",
	})
	etc, lib := filepath.Join(root, "etc/os-release"), filepath.Join(root, "usr/lib/os-release")
	write := func(p, content string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name     string
		change   func(t *testing.T)
		wantName string
		wantVer  string
	}{
		{"first answer", func(*testing.T) {}, "Lib", "1"},
		{"unchanged", func(*testing.T) {}, "Lib", "1"},
		{"/usr/lib file rewritten, same size", write(lib, "NAME=Lob\nVERSION=2\n"), "Lob", "2"},
		{"/etc file appears", write(etc, "NAME=Etc\nVERSION=3\n"), "Etc", "3"},
		{"/etc file replaced by rename", func(t *testing.T) {
			tmp := etc + ".new"
			write(tmp, "NAME=Etc\nVERSION=4\n")(t)
			if err := os.Rename(tmp, etc); err != nil {
				t.Fatal(err)
			}
		}, "Etc", "4"},
		{"/etc file removed: back to /usr/lib", func(t *testing.T) {
			if err := os.Remove(etc); err != nil {
				t.Fatal(err)
			}
		}, "Lob", "2"},
	}
	s := New(seedConfig(t), Options{HostRoot: root, Power: &fakePower{t: t}})
	for _, st := range steps {
		st.change(t)
		var r protocol.SystemInfo
		mustCall(t, s.Handlers()[protocol.MethodGetSystemInfo], nil, &r)
		if r.OSName != st.wantName || r.OSVersion != st.wantVer {
			t.Errorf("%s: os %q %q, want %q %q", st.name, r.OSName, r.OSVersion, st.wantName, st.wantVer)
		}
	}
}
