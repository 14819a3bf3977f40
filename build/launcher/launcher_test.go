package launcher

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeRepo writes a small tree with a file in every input directory and
// two artifacts under dist, takes the snapshot of target "iso" and writes
// its quick stamp, as the pipeline does after a run. The build identity
// comes from the environment (the tree is not a git checkout).
func fakeRepo(t *testing.T) (root string, artifacts []string) {
	return fakeRepoAt(t, false)
}

// fakeRepoAt is fakeRepo; settled dates the snapshot an hour ahead, so that
// every file counts as settled and the next Take trusts recorded hashes by
// metadata: a change must then show in the metadata alone.
func fakeRepoAt(t *testing.T, settled bool) (root string, artifacts []string) {
	t.Helper()
	t.Setenv("KVMMANAGER_VERSION", "1.2.3")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	root = t.TempDir()
	files := map[string]string{
		"go.mod":                   "module example.com/m\n\ngo 1.26\n",
		"go.sum":                   "",
		"agent/methods/methods.go": "package methods\n",
		"build/iso/layout.go":      "package iso\n",
		"packaging/nfpm.yaml":      "name: kvmmanager-agent\n",
		"installers/install.sh":    "#!/bin/sh\necho install\n",
		"magefiles/magefile.go":    "//go:build mage\n\npackage main\n",
		"README.md":                "not an input\n",
		"dist/bin/linux-amd64/a":   "agent bytes",
		"dist/kvmmanager.iso":      "iso bytes",
	}
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	artifacts = []string{filepath.Join(root, "dist/bin/linux-amd64/a"), filepath.Join(root, "dist/kvmmanager.iso")}
	snap, err := Take(root, "iso", os.Environ(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if settled {
		snap.Taken = time.Now().Add(time.Hour).UnixNano()
	}
	if err := WriteQuickStamp(filepath.Join(root, "dist"), "iso", snap, artifacts); err != nil {
		t.Fatal(err)
	}
	return root, artifacts
}

func quickHolds(t *testing.T, root string) (bool, string) {
	t.Helper()
	var out bytes.Buffer
	ok, err := UpToDate(root, "iso", &out)
	if err != nil {
		t.Fatal(err)
	}
	return ok, out.String()
}

func TestUpToDatePrintsThePipelineLines(t *testing.T) {
	root, artifacts := fakeRepo(t)
	ok, out := quickHolds(t, root)
	if !ok {
		t.Fatal("an unchanged tree is not up to date")
	}
	wd, _ := os.Getwd()
	want := Line(wd, artifacts[0], 11, 0, true) + Line(wd, artifacts[1], 9, 0, true)
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
	if !strings.HasSuffix(strings.SplitN(out, "\n", 2)[0], "11 B  up to date") {
		t.Errorf("line %q is not the pipeline's path, size and 'up to date'", strings.SplitN(out, "\n", 2)[0])
	}
	// A file outside the inputs does not matter.
	if err := os.WriteFile(filepath.Join(root, "README.md"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, _ := quickHolds(t, root); !ok {
		t.Error("an edit of README.md (not an input) made the target stale")
	}
}

// TestUpToDateNoticesEveryInput changes one input (or artifact) at a time
// in a fresh tree: each must make the quick path step aside, and print
// nothing.
func TestUpToDateNoticesEveryInput(t *testing.T) {
	appendTo := func(rel, s string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			f, err := os.OpenFile(filepath.Join(root, filepath.FromSlash(rel)), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	write := func(rel, s string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			p := filepath.Join(root, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	setenv := func(k, v string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			// A change whatever the environment running the test holds
			// (CI sets KVMMANAGER_REQUIRE_TOOLS=1).
			val := v
			if os.Getenv(k) == val {
				val += "-changed"
			}
			t.Setenv(k, val)
		}
	}
	cases := []struct {
		name   string
		change func(t *testing.T, root string)
	}{
		{"agent source edited", appendTo("agent/methods/methods.go", "// edit\n")},
		{"agent file added", write("agent/methods/new.go", "package methods\n")},
		{"agent file removed", func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(root, "agent/methods/methods.go")); err != nil {
				t.Fatal(err)
			}
		}},
		{"builder source edited", appendTo("build/iso/layout.go", "// edit\n")},
		{"packaging file edited", appendTo("packaging/nfpm.yaml", "# edit\n")},
		{"installer edited", appendTo("installers/install.sh", "# edit\n")},
		{"installer made executable", func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "installers/install.sh"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"magefile edited", appendTo("magefiles/magefile.go", "// edit\n")},
		{"go.mod edited", appendTo("go.mod", "// edit\n")},
		{"go.sum edited", appendTo("go.sum", "example.com/x v1.0.0 h1:abc=\n")},
		{"go.work appears", write("go.work", "go 1.26\n\nuse .\n")},
		{"same size and mtime, new content", func(t *testing.T, root string) {
			p := filepath.Join(root, "agent/methods/methods.go")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("package methodz\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{"version changed", setenv("KVMMANAGER_VERSION", "1.2.4")},
		{"SOURCE_DATE_EPOCH changed", setenv("SOURCE_DATE_EPOCH", "1700000001")},
		{"GOFLAGS set", setenv("GOFLAGS", "-tags=extra")},
		{"GOAMD64 set", setenv("GOAMD64", "v3")},
		{"project variable set", setenv("KVMMANAGER_REQUIRE_TOOLS", "1")},
		{"signing key set", setenv("KVMMANAGER_SIGNING_KEY_FILE", "/nonexistent/key.asc")},
		{"apk key set", setenv("KVMMANAGER_APK_KEY", "-----BEGIN RSA PRIVATE KEY-----")},
		{"artifact rewritten", write("dist/kvmmanager.iso", "iso bytez")},
		{"artifact removed", func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(root, "dist/bin/linux-amd64/a")); err != nil {
				t.Fatal(err)
			}
		}},
		{"artifact touched", func(t *testing.T, root string) {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(root, "dist/kvmmanager.iso"), later, later); err != nil {
				t.Fatal(err)
			}
		}},
		{"stamp removed", func(t *testing.T, root string) {
			if err := RemoveQuickStamp(filepath.Join(root, "dist"), "iso"); err != nil {
				t.Fatal(err)
			}
		}},
		{"stamp damaged", write("dist/.stamps/quick-iso.json", `{"key":`)},
	}
	for _, settled := range []bool{false, true} {
		for _, c := range cases {
			name := c.name
			if settled {
				name += " (settled files)"
			}
			t.Run(name, func(t *testing.T) {
				root, _ := fakeRepoAt(t, settled)
				if ok, _ := quickHolds(t, root); !ok {
					t.Fatal("the fresh tree is not up to date")
				}
				c.change(t, root)
				if ok, out := quickHolds(t, root); ok || out != "" {
					t.Errorf("still up to date after the change (printed %q)", out)
				}
			})
		}
	}
}

// TestTakeTrustsOnlySettledFiles checks the metadata cache: a file whose
// metadata match a snapshot taken well after its last change keeps the
// recorded hash (so a no-op reads no file), and one that changed within
// racyWindow before the snapshot is read again.
func TestTakeTrustsOnlySettledFiles(t *testing.T) {
	root, _ := fakeRepo(t)
	prev, err := Take(root, "iso", os.Environ(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const bogus = "0000000000000000000000000000000000000000000000000000000000000000"
	forge := func(taken time.Time) *Snapshot {
		s := *prev
		s.Taken = taken.UnixNano()
		s.Files = append([]fileState(nil), prev.Files...)
		for i := range s.Files {
			s.Files[i].Sum = bogus
		}
		return &s
	}
	sumOf := func(s *Snapshot, path string) string {
		for _, f := range s.Files {
			if f.Path == path {
				return f.Sum
			}
		}
		t.Fatalf("no %s in the snapshot", path)
		return ""
	}
	const p = "agent/methods/methods.go"

	settled, err := Take(root, "iso", os.Environ(), forge(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if changeSupported() && sumOf(settled, p) != bogus {
		t.Errorf("a settled file with the recorded metadata was read again")
	}
	if !changeSupported() && sumOf(settled, p) == bogus {
		t.Errorf("without change times, a recorded hash was trusted")
	}

	racy, err := Take(root, "iso", os.Environ(), forge(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if sumOf(racy, p) == bogus || sumOf(racy, p) != sumOf(prev, p) {
		t.Errorf("a file changed within %v before the snapshot was trusted by its metadata", racyWindow)
	}
}

func changeSupported() bool {
	fi, err := os.Stat(".")
	if err != nil {
		return false
	}
	c, _ := changeTime(fi)
	return c != 0
}

func TestTakeRefusesSigningKeys(t *testing.T) {
	root, _ := fakeRepo(t)
	for _, kv := range []string{"KVMMANAGER_SIGNING_KEY=x", "KVMMANAGER_SIGNING_PASSPHRASE=x", "KVMMANAGER_APK_KEY_FILE=/k.pem"} {
		if _, err := Take(root, "iso", append(os.Environ(), kv), nil); !errors.Is(err, ErrSigning) {
			t.Errorf("with %s: err = %v, want ErrSigning", kv, err)
		}
	}
	// Set but empty is unset.
	if _, err := Take(root, "iso", append(os.Environ(), "KVMMANAGER_SIGNING_KEY="), nil); err != nil {
		t.Errorf("with an empty KVMMANAGER_SIGNING_KEY: %v", err)
	}
}

func TestWriteQuickStampRefusesArtifactOutsideDist(t *testing.T) {
	root, _ := fakeRepo(t)
	snap, err := Take(root, "iso", os.Environ(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = WriteQuickStamp(filepath.Join(root, "dist"), "iso", snap, []string{filepath.Join(root, "go.mod")})
	if err == nil || !strings.Contains(err.Error(), "not under") {
		t.Errorf("err = %v, want one naming the artifact outside dist", err)
	}
}

// TestRunBuilderReturnsTheTargetsError runs a stand-in builder that fails
// the way kvmbuild does: its message, written to the error file, is the
// error, word for word (mage prints it after "Error: ").
func TestRunBuilderReturnsTheTargetsError(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "builder")
	script := "#!/bin/sh\n[ \"$1\" = -error-file ] || exit 3\n[ \"$3\" = iso ] || exit 4\necho progress\nprintf 'iso file install.sh: open installers/install.sh: no such file or directory' > \"$2\"\nexit 1\n"
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := RunBuilder(context.Background(), dir, exe, "iso", &stdout, &stderr)
	if err == nil || err.Error() != "iso file install.sh: open installers/install.sh: no such file or directory" {
		t.Errorf("err = %v, want the builder's message as is", err)
	}
	if stdout.String() != "progress\n" {
		t.Errorf("stdout = %q, want the builder's output", stdout.String())
	}

	// A builder that dies without a message: the exit status, named.
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err = RunBuilder(context.Background(), dir, exe, "iso", &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "builder iso") || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("err = %v, want the builder, target and exit status", err)
	}
}

// TestBuilderKeyCoversItsPackagesOnly: the builder's own stamp changes with
// a file of its packages (or a subdirectory of one), go.mod, go.sum or the
// Go environment, and not with an agent file it does not import.
func TestBuilderKeyCoversItsPackagesOnly(t *testing.T) {
	root, _ := fakeRepo(t)
	dirs := []string{"build/iso"}
	key := func() string {
		t.Helper()
		snap, err := Take(root, "test", os.Environ(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return builderKey(snap, dirs)
	}
	write := func(rel, s string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := key()
	write("agent/methods/methods.go", "package methods // edited\n")
	write("packaging/nfpm.yaml", "name: other\n")
	if key() != k {
		t.Error("an agent or packaging edit changed the builder's key")
	}
	for _, c := range []struct{ name, rel string }{
		{"builder source", "build/iso/layout.go"},
		{"embedded file in a subdirectory", "build/iso/files/readme.txt"},
		{"go.mod", "go.mod"},
		{"go.sum", "go.sum"},
	} {
		write(c.rel, "changed "+c.name+"\n")
		if n := key(); n == k {
			t.Errorf("a change of %s (%s) left the builder's key", c.name, c.rel)
		} else {
			k = n
		}
	}
	t.Setenv("GOFLAGS", "-tags=x")
	if key() == k {
		t.Error("GOFLAGS left the builder's key")
	}
}
