package binaries

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"debug/pe"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
	"github.com/kvmmanager/guest-agent/build/version"
)

// fixtureRoot writes a module with the real agent/version package and a tiny
// main at the agent's package path that prints the stamped identity.
func fixtureRoot(t *testing.T, withAgent bool) string {
	t.Helper()
	root := t.TempDir()
	src, err := os.ReadFile(testenv.RepoPath(t, "agent/version/version.go"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":                   "module github.com/kvmmanager/guest-agent\n\ngo 1.26\n",
		"agent/version/version.go": string(src),
	}
	if withAgent {
		files["agent/cmd/kvmmanager-agent/main.go"] = `package main

import (
	"fmt"

	"github.com/kvmmanager/guest-agent/agent/version"
)

func main() { fmt.Println(version.Version, version.Commit) }
`
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func mustImportedLibraries(t *testing.T, f *pe.File) []string {
	t.Helper()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return libs
}

func TestBuildStampsVersionAndIsStatic(t *testing.T) {
	root := fixtureRoot(t, true)
	info := version.Info{Version: "1.2.3-rc.1+4.gabcdef0", Commit: "abcdef0123456789", SourceDateEpoch: 1}
	var notices []string
	dist := t.TempDir()
	bins, err := Build(context.Background(), Options{Root: root, Dist: dist, Info: info, Notices: func(s string) { notices = append(notices, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(bins) != 4 {
		t.Fatalf("built %d binaries, want 4 (agent for linux and windows, amd64 and arm64): %+v", len(bins), bins)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "kvmmanager-agentctl") {
		t.Errorf("notices = %q, want one about the missing kvmmanager-agentctl", notices)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	peMachines := map[string]uint16{"amd64": pe.IMAGE_FILE_MACHINE_AMD64, "arm64": pe.IMAGE_FILE_MACHINE_ARM64}
	for _, b := range bins {
		if b.OS == "windows" {
			if want := filepath.Join(dist, "bin", "windows-"+b.Arch, "kvmmanager-agent.exe"); b.Path != want {
				t.Errorf("path = %s, want %s", b.Path, want)
			}
			f, err := pe.Open(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != peMachines[b.Arch] {
				t.Errorf("%s: machine %#x, want %#x", b.Path, f.Machine, peMachines[b.Arch])
			}
			for _, imp := range mustImportedLibraries(t, f) {
				// Static: only system DLLs, no C runtime.
				if strings.HasPrefix(strings.ToLower(imp), "msvcr") || strings.HasPrefix(strings.ToLower(imp), "libgcc") {
					t.Errorf("%s imports %s, want no C runtime (CGO_ENABLED=0)", b.Path, imp)
				}
			}
			f.Close()
			continue
		}
		if want := filepath.Join(dist, "bin", "linux-"+b.Arch, "kvmmanager-agent"); b.Path != want {
			t.Errorf("path = %s, want %s", b.Path, want)
		}
		f, err := elf.Open(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machines[b.Arch] {
			t.Errorf("%s: machine %v, want %v", b.Path, f.Machine, machines[b.Arch])
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: has an ELF interpreter, want a static binary", b.Path)
			}
		}
		if s := f.Section(".symtab"); s != nil {
			t.Errorf("%s: has a symbol table, want it stripped (-s)", b.Path)
		}
		f.Close()
		st, err := os.Stat(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s: mode %v is not executable", b.Path, st.Mode())
		}
		if b.Arch == runtime.GOARCH && runtime.GOOS == "linux" {
			out, err := exec.Command(b.Path).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.TrimSpace(string(out)), info.Version+" "+info.Commit; got != want {
				t.Errorf("stamped identity = %q, want %q", got, want)
			}
		}
	}

	// The same inputs give the same bytes, wherever the output goes.
	dist2 := t.TempDir()
	bins2, err := Build(context.Background(), Options{Root: root, Dist: dist2, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	for i := range bins {
		if a, b := fileHash(t, bins[i].Path), fileHash(t, bins2[i].Path); a != b {
			t.Errorf("%s and %s differ", bins[i].Path, bins2[i].Path)
		}
	}
}

func TestBuildMissingAgentFails(t *testing.T) {
	root := fixtureRoot(t, false)
	_, err := Build(context.Background(), Options{Root: root, Dist: t.TempDir(), Info: version.Info{Version: "1.0.0"}})
	if err == nil || !strings.Contains(err.Error(), "kvmmanager-agent") {
		t.Fatalf("Build without agent = %v, want an error naming kvmmanager-agent", err)
	}
}

func TestBuildCompileErrorNamesPackage(t *testing.T) {
	root := fixtureRoot(t, true)
	bad := filepath.Join(root, "agent", "cmd", "kvmmanager-agent", "bad.go")
	if err := os.WriteFile(bad, []byte("package main\nfunc broken() { undefinedThing() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	_, err := Build(context.Background(), Options{Root: root, Dist: dist, Info: version.Info{Version: "1.0.0"}, Arches: []string{"amd64"}})
	if err == nil || !strings.Contains(err.Error(), "./agent/cmd/kvmmanager-agent") || !strings.Contains(err.Error(), "undefinedThing") {
		t.Fatalf("Build with a compile error = %v, want the package and the compiler message", err)
	}
	if _, err := os.Stat(Path(dist, "amd64", "kvmmanager-agent")); !os.IsNotExist(err) {
		t.Errorf("a failed build left a binary behind (stat: %v)", err)
	}
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
