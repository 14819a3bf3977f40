package pipeline

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/iso"
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
			got, err := newInputs(repoRoot).commandSources(module, tc.pkg, []binaries.Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}, {OS: "windows", Arch: "amd64"}})
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
// again, and of those only the platforms whose build includes the file.
func TestEditRebuildsOnlyItsCommand(t *testing.T) {
	t.Setenv("KVMMANAGER_VERSION", "1.2.3")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	root := copyModule(t, "agent")
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
	edit := func(rel string) { t.Helper(); appendComment(t, filepath.Join(root, rel)) }
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
	edit("agent/methods/accounts_linux.go")
	if got, want := built(), agent[:2]; !slices.Equal(got, want) {
		t.Errorf("after editing a Linux-only file of agent/methods: built %v, want %v", got, want)
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

// copyModule copies go.mod, go.sum and the given directories of the
// repository into a temporary directory and returns it.
func copyModule(t *testing.T, dirs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		if err := os.CopyFS(filepath.Join(root, d), os.DirFS(filepath.Join(repoRoot, d))); err != nil {
			t.Fatal(err)
		}
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
	return root
}

// appendComment appends a comment line to the Go file p.
func appendComment(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n// edited by the test\n"); err != nil {
		t.Fatal(err)
	}
}

// TestSameBytesKeepPackagesAndISO edits an agent file without changing what
// it compiles to (a comment), then with a change of code: the first keeps
// the binaries' bytes, and the packages and the ISO stay up to date; the
// second rebuilds them.
func TestSameBytesKeepPackagesAndISO(t *testing.T) {
	t.Setenv("KVMMANAGER_VERSION", "1.2.3")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	root := copyModule(t, "agent", "packaging", "installers")
	dist := filepath.Join(root, "dist")
	build := func() map[string]string {
		t.Helper()
		var out bytes.Buffer
		if _, err := ISO(context.Background(), Options{Root: root, Dist: dist, Out: &out}); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		lines := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(line, "notice:") && !strings.HasPrefix(line, "signing:") {
				lines[filepath.Base(filepath.Dir(f[0]))+"/"+filepath.Base(f[0])] = line
			}
		}
		return lines
	}
	build()
	before := distHashes(t, dist)
	isoPath := filepath.Join(dist, iso.FileName)
	isoBefore, err := os.Stat(isoPath)
	if err != nil {
		t.Fatal(err)
	}

	appendComment(t, filepath.Join(root, "agent", "methods", "agent.go"))
	lines := build()
	if got := lines["linux-amd64/kvmmanager-agent"]; strings.HasSuffix(got, "up to date") {
		t.Errorf("an edited agent source left the agent's step up to date: %q", got)
	}
	for name, line := range lines {
		if strings.Contains(name, ".iso") || strings.HasPrefix(name, "packages/") {
			if !strings.HasSuffix(line, "up to date") {
				t.Errorf("a comment edit rebuilt %s: %q", name, line)
			}
		}
	}
	if after := distHashes(t, dist); !maps.Equal(before, after) {
		t.Errorf("a comment edit changed the artifacts:\nbefore %v\nafter  %v", before, after)
	}
	if st, _ := os.Stat(isoPath); !st.ModTime().Equal(isoBefore.ModTime()) {
		t.Error("a comment edit rewrote the ISO")
	}

	code := "package main\n\nimport \"os\"\n\n// editedPID is code added by the test: the agent's bytes change.\nvar editedPID = os.Getpid()\n"
	if err := os.WriteFile(filepath.Join(root, "agent", "cmd", "kvmmanager-agent", "zz_edit.go"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	lines = build()
	for _, name := range []string{"linux-amd64/kvmmanager-agent", "windows-arm64/kvmmanager-agent.exe", "dist/" + iso.FileName} {
		if strings.HasSuffix(lines[name], "up to date") || lines[name] == "" {
			t.Errorf("a code edit did not rebuild %s: %q", name, lines[name])
		}
	}
	if got := lines["linux-amd64/kvmmanager-agentctl"]; !strings.HasSuffix(got, "up to date") {
		t.Errorf("an agent edit rebuilt the CLI: %q", got)
	}
	after := distHashes(t, dist)
	for _, rel := range []string{"bin/linux-amd64/kvmmanager-agent", iso.FileName} {
		if after[rel] == before[rel] {
			t.Errorf("%s has the same bytes after a code edit", rel)
		}
	}
}
