package launcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/kvmmanager/guest-agent/build/filelock"
)

// BuilderPath is where Builder puts the builder for the repository at root.
func BuilderPath(root string) string {
	name := "kvmbuild"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(root, "dist", ".builder", name)
}

// builderStampPath is the builder's own stamp.
func builderStampPath(root string) string {
	return filepath.Join(root, "dist", ".stamps", "builder.json")
}

// builderStamp records what the builder executable was built from: the
// directories of the module's packages in its import graph, the key of
// their files (with go.mod, go.sum, the Go version, environment and
// configuration) and the executable as written.
type builderStamp struct {
	Key     string   `json:"key"`
	Dirs    []string `json:"dirs"` // relative to the root, slash-separated
	Size    int64    `json:"size"`
	ModTime int64    `json:"mtime_ns"`
}

// Builder returns the builder's executable, built into dist/.builder/.
//
// When snap (the inputs as they are now; may be nil) shows that no file of
// the builder's own packages, nor go.mod, go.sum, the Go version, the Go
// environment or configuration changed since the builder was built, and the
// executable is as written, it is used as is: an edit of the agent does not
// cost a check of the builder's few hundred packages. Otherwise the go
// command builds it (keeping the executable when its build ID shows it up
// to date), and the stamp is written again with the packages `go list`
// names. A dependency outside the module cache and the module (a local
// replace, a vendor directory) leaves the builder without a stamp: the go
// command then checks it every time.
//
// CGO_ENABLED=0: the builder needs no C, and the go command then runs no C
// compiler to check it.
func Builder(ctx context.Context, root string, snap *Snapshot) (string, error) {
	exe := BuilderPath(root)
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(exe), err)
	}
	// One launcher at a time builds the builder and writes its stamp, so
	// that a stamp never pairs one run's key with another's executable.
	unlock, err := filelock.Lock(filepath.Join(filepath.Dir(exe), ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if snap != nil {
		if st, ok := readBuilderStamp(root); ok && st.Key == builderKey(snap, st.Dirs) && st.holds(exe) {
			return exe, nil
		}
	}
	_ = os.Remove(builderStampPath(root))
	if _, err := goCmd(ctx, root, "build", "-o", exe, BuilderPackage); err != nil {
		return "", err
	}
	if snap == nil {
		return exe, nil
	}
	dirs, err := builderDirs(ctx, root)
	if err != nil || dirs == nil {
		return exe, err
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return "", fmt.Errorf("builder: %w", err)
	}
	// The key is of the inputs as snap found them, before the build: an
	// edit made during it makes the stamp stale.
	st := builderStamp{Key: builderKey(snap, dirs), Dirs: dirs, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	b, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("encode builder stamp: %w", err)
	}
	if err := writeAtomic(builderStampPath(root), b); err != nil {
		return "", err
	}
	return exe, nil
}

func readBuilderStamp(root string) (builderStamp, bool) {
	b, err := os.ReadFile(builderStampPath(root))
	if err != nil {
		return builderStamp{}, false
	}
	var st builderStamp
	if json.Unmarshal(b, &st) != nil || st.Key == "" || len(st.Dirs) == 0 {
		return builderStamp{}, false
	}
	return st, true
}

// holds reports whether exe is the regular file the stamp recorded.
func (st builderStamp) holds(exe string) bool {
	fi, err := os.Stat(exe)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == st.Size && fi.ModTime().UnixNano() == st.ModTime
}

// builderKey hashes what the builder is built from as snap found it: the
// Go version, the environment and go configuration snap covers, go.mod,
// go.sum and every file under dirs (embedded files may sit in
// subdirectories).
func builderKey(snap *Snapshot, dirs []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "builder/1\n%s\n%s\n", runtime.Version(), snap.configSum)
	for _, kv := range snap.env {
		fmt.Fprintf(h, "env %d:%s\n", len(kv), kv)
	}
	for _, d := range dirs {
		fmt.Fprintf(h, "dir %s\n", d)
	}
	for _, f := range snap.Files {
		if !builderInput(f.Path, dirs) {
			continue
		}
		fmt.Fprintf(h, "file %s %o %d %s\n", f.Path, f.Mode, f.Size, f.Sum)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func builderInput(p string, dirs []string) bool {
	if p == "go.mod" || p == "go.sum" {
		return true
	}
	for _, d := range dirs {
		if strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// builderDirs lists the directories (relative to root) of the module's
// packages that the builder imports, or nil when one of its packages
// comes from neither the module nor the module cache, or lies outside the
// directories a snapshot covers.
func builderDirs(ctx context.Context, root string) ([]string, error) {
	out, err := goCmd(ctx, root, "list", "-deps", "-f",
		`{{if not .Standard}}{{.Dir}}{{"\t"}}{{with .Module}}{{.Main}}{{"\t"}}{{with .Replace}}{{.Version}}-{{end}}{{end}}{{end}}`,
		BuilderPackage)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			return nil, nil // no module: not a module build
		}
		dir, main, replace := f[0], f[1], f[2]
		if main != "true" {
			// A module from the cache is pinned by go.sum; a local
			// replacement (a directory, no version) is not.
			if replace == "-" {
				return nil, nil
			}
			if rel, err := filepath.Rel(root, dir); err == nil && filepath.IsLocal(rel) {
				return nil, nil // vendored
			}
			continue
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, nil
		}
		rel = filepath.ToSlash(rel)
		covered := false
		for _, d := range InputDirs {
			covered = covered || rel == d || strings.HasPrefix(rel, d+"/")
		}
		if !covered {
			return nil, nil
		}
		dirs = append(dirs, rel)
	}
	sort.Strings(dirs)
	return dirs, nil
}

// goCmd runs the go command in root for the builder (CGO_ENABLED=0) and
// returns its standard output.
func goCmd(ctx context.Context, root string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s %s: %w\n%s", args[0], BuilderPackage, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// writeAtomic writes b to p through a temporary file and a rename.
func writeAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", p, werr)
	}
	return nil
}
