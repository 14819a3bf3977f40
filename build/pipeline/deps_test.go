package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/binaries"
)

func TestCommandSources(t *testing.T) {
	module, err := modulePath(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if module != "github.com/kvmmanager/guest-agent" {
		t.Fatalf("module path = %q", module)
	}
	for _, tc := range []struct {
		pkg           string
		want, notWant []string
	}{
		{
			pkg: "./agent/cmd/kvmmanager-agent",
			want: []string{"agent/cmd/kvmmanager-agent/main.go", "agent/methods/files.go",
				"agent/server/server.go", "agent/methods/disk_linux.go", "agent/protocol/protocol.go",
				"agent/methods/disk_windows.go", "agent/cmd/kvmmanager-agent/service_windows.go"},
			// The host CLI, tests and build logic do not go into the agent.
			notWant: []string{"agent/cmd/kvmmanager-agentctl/main.go", "agent/methods/files_test.go",
				"build/pipeline/pipeline.go", "go.mod"},
		},
		{
			pkg:     "./agent/cmd/kvmmanager-agentctl",
			want:    []string{"agent/cmd/kvmmanager-agentctl/main.go", "agent/client/client.go"},
			notWant: []string{"agent/cmd/kvmmanager-agent/main.go", "agent/methods/files.go", "agent/server/server.go"},
		},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			got, err := commandSources(repoRoot, module, tc.pkg, []binaries.Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}, {OS: "windows", Arch: "amd64"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.want {
				if !slices.Contains(got, filepath.FromSlash(f)) {
					t.Errorf("sources of %s lack %s: %v", tc.pkg, f, got)
				}
			}
			for _, f := range tc.notWant {
				if slices.Contains(got, filepath.FromSlash(f)) {
					t.Errorf("sources of %s include %s", tc.pkg, f)
				}
			}
		})
	}
}

// TestEditRebuildsOnlyItsCommand edits a file of one command's sources in a
// copy of the module and checks that only that command's binaries are built
// again.
func TestEditRebuildsOnlyItsCommand(t *testing.T) {
	t.Setenv("KVMMANAGER_VERSION", "1.2.3")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "agent"), os.DirFS(filepath.Join(repoRoot, "agent"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dist := filepath.Join(root, "dist")
	built := func() []string {
		t.Helper()
		var out bytes.Buffer
		if _, err := Binaries(context.Background(), Options{Root: root, Dist: dist, Out: &out}); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if f := strings.Fields(line); len(f) > 0 && !strings.HasSuffix(line, "up to date") {
				names = append(names, filepath.Base(filepath.Dir(f[0]))+"/"+filepath.Base(f[0]))
			}
		}
		slices.Sort(names)
		return names
	}
	edit := func(rel string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(root, rel), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("\n// edited by the test\n"); err != nil {
			t.Fatal(err)
		}
	}
	agent := []string{"linux-amd64/kvmmanager-agent", "linux-arm64/kvmmanager-agent",
		"windows-amd64/kvmmanager-agent.exe", "windows-arm64/kvmmanager-agent.exe"}
	ctl := []string{"linux-amd64/kvmmanager-agentctl", "linux-arm64/kvmmanager-agentctl"}
	if got, want := built(), slices.Sorted(slices.Values(append(slices.Clone(agent), ctl...))); !slices.Equal(got, want) {
		t.Fatalf("first build built %v, want %v", got, want)
	}
	if got := built(); len(got) != 0 {
		t.Errorf("a rerun built %v, want nothing", got)
	}
	edit("agent/methods/agent.go")
	if got := built(); !slices.Equal(got, agent) {
		t.Errorf("after editing agent/methods: built %v, want %v", got, agent)
	}
	edit("agent/client/client.go")
	if got := built(); !slices.Equal(got, ctl) {
		t.Errorf("after editing agent/client: built %v, want %v", got, ctl)
	}
	edit("agent/protocol/types.go")
	if got, want := built(), slices.Sorted(slices.Values(append(slices.Clone(agent), ctl...))); !slices.Equal(got, want) {
		t.Errorf("after editing agent/protocol (shared): built %v, want all %v", got, want)
	}
}
