// Package wine runs the agent's Windows executables on this Linux machine:
// a Debian 13 (trixie) root with Wine 10, made with mmdebstrap and cached
// under the user's cache directory like build/distro's images, in which a
// Windows program runs as `/usr/lib/wine/wine64 prog.exe`.
//
// Go 1.26 Windows binaries need bcryptprimitives.dll's ProcessPrng, which
// Debian 12's Wine 8 lacks; trixie's Wine 10 has it. Every run gets a
// private mount and PID namespace (unshare) with the cached root as the
// lower layer of a tmpfs overlay, so runs never change the cache (the Wine
// prefix, C:\ and its registry, start fresh each time) and everything the
// run started, wineserver included, dies with it.
//
// The root is built by Build (`go tool mage wineRoot`, about 80 s and 1.1 GB);
// the winexec command under this package is the `go test -exec` wrapper that
// runs Windows test binaries inside it.
package wine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kvmmanager/guest-agent/build/filelock"
)

// CacheEnv overrides the cache directory of the Wine root.
const CacheEnv = "KVMMANAGER_WINE_CACHE"

// Suite and Packages make the root: mmdebstrap's apt variant plus Wine.
const Suite = "trixie"

// Packages are installed into the root.
var Packages = []string{"wine64", "wine"}

// bakeVersion changes when Build's logic changes in a way the key does not
// show, so a cached root is rebuilt.
const bakeVersion = "1"

// Loader is the Wine loader inside the root.
const Loader = "/usr/lib/wine/wine64"

// ErrNotBuilt is returned by Find when the cache holds no complete root.
var ErrNotBuilt = errors.New("no Wine root in the cache (build it with `go tool mage wineRoot`)")

const completeName = "complete" // written last: the root is usable

// Root is a built Wine root.
type Root struct {
	Dir string // the root file system, the lower layer of every run
}

// CacheDir returns $KVMMANAGER_WINE_CACHE, else kvmmanager-agent/wine under
// the user's cache directory ($XDG_CACHE_HOME or ~/.cache).
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("wine cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(base, "kvmmanager-agent", "wine"), nil
}

// Key is the cache key of the root: a hash of the suite, the packages and
// the baking logic's version.
func Key() string {
	h := sha256.Sum256([]byte(fmt.Sprintf("bake %s\nsuite %s\npackages %s\n", bakeVersion, Suite, strings.Join(Packages, ","))))
	return hex.EncodeToString(h[:])[:16]
}

func entryDir(cacheDir string) string { return filepath.Join(cacheDir, Suite+"-"+Key()) }

// Find returns the cached root, or ErrNotBuilt.
func Find(cacheDir string) (*Root, error) {
	dir := entryDir(cacheDir)
	if _, err := os.Stat(filepath.Join(dir, completeName)); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotBuilt, dir)
	}
	return &Root{Dir: filepath.Join(dir, "root")}, nil
}

// Build returns the cached root, building it first when the cache has none
// with the current key. It needs root, mmdebstrap, unshare and the network
// (Debian's archive); progress goes to log. Concurrent builds are
// serialised by a lock file.
func Build(ctx context.Context, cacheDir string, log io.Writer) (*Root, error) {
	if r, err := Find(cacheDir); err == nil {
		return r, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create wine cache %s: %w", cacheDir, err)
	}
	unlock, err := filelock.Lock(filepath.Join(cacheDir, "build.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if r, err := Find(cacheDir); err == nil { // built while we waited
		return r, nil
	}
	dir := entryDir(cacheDir)
	work, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "root")
	fmt.Fprintf(log, "wine: building the Wine root with mmdebstrap (%s, apt + %s)\n", Suite, strings.Join(Packages, ","))
	args := []string{
		"--variant=apt",
		"--include=" + strings.Join(Packages, ","),
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		Suite, tree,
	}
	if err := run(ctx, log, "mmdebstrap", args...); err != nil {
		return nil, fmt.Errorf("build wine root: %w", err)
	}
	// Make the Wine prefix once (wineboot takes several seconds), so that
	// each run starts from a ready C:\ and registry. The prefix is written
	// straight into the tree: no overlay here.
	r := &Root{Dir: tree}
	cmd := r.command(ctx, false, nil, "/", Loader, "wineboot", "--init")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build wine root: wineboot --init: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, completeName), nil, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", completeName, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove incomplete %s: %w", dir, err)
	}
	if err := os.Rename(work, dir); err != nil {
		return nil, fmt.Errorf("rename %s to %s: %w", work, dir, err)
	}
	pruneStale(cacheDir, dir, log)
	fmt.Fprintf(log, "wine: root ready in %s\n", dir)
	return Find(cacheDir)
}

// pruneStale removes cached roots with another key.
func pruneStale(cacheDir, keep string, log io.Writer) {
	old, _ := filepath.Glob(filepath.Join(cacheDir, Suite+"-*"))
	for _, d := range old {
		if d != keep {
			fmt.Fprintf(log, "wine: removing stale root %s\n", d)
			os.RemoveAll(d)
		}
	}
}

// RunOptions configure Command.
type RunOptions struct {
	// Binds are host directories made visible at the same path inside the
	// root (Wine shows them under Z:\). The program's directory and Dir are
	// always bound.
	Binds []string
	// Dir is the working directory (a host path); "" means the current one.
	Dir string
}

// Command returns the command that runs the Windows program exe (a host
// path) with args under Wine inside a throw-away overlay of the root. The
// command's environment is passed to the program (Wine copies the Unix
// environment into the Windows one); WINEDEBUG defaults to -all.
func (r *Root) Command(ctx context.Context, opts RunOptions, exe string, args ...string) (*exec.Cmd, error) {
	exe, err := filepath.Abs(exe)
	if err != nil {
		return nil, fmt.Errorf("wine: %w", err)
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("wine: working directory: %w", err)
		}
	}
	binds := append([]string{filepath.Dir(exe), dir}, opts.Binds...)
	return r.command(ctx, true, binds, dir, Loader, append([]string{exe}, args...)...), nil
}

// script runs inside the new namespaces: $1 is the root, $2 "overlay" or
// "direct", $3 the working directory, $4 the number of binds, then the
// binds, then the program and its arguments.
const script = `set -eu
root=$1 mode=$2 cwd=$3 nb=$4
shift 4
m=$root
if [ "$mode" = overlay ]; then
	t=$(mktemp -d /tmp/kvmmanager-wine.XXXXXX)
	mount -t tmpfs tmpfs "$t"
	mkdir "$t/upper" "$t/work" "$t/merged"
	mount -t overlay overlay -o "lowerdir=$root,upperdir=$t/upper,workdir=$t/work" "$t/merged"
	m=$t/merged
fi
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
i=0
while [ "$i" -lt "$nb" ]; do
	mkdir -p "$m$1"
	mount --bind "$1" "$m$1"
	shift
	i=$((i + 1))
done
if [ "$mode" = overlay ]; then
	exec chroot "$m" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
fi
# Straight into the root: wait for wineserver to save the registry.
exec chroot "$m" /bin/sh -c 'cd "$0" && "$@"; s=$?; /usr/lib/wine/wineserver -w; exit $s' "$cwd" "$@"
`

func (r *Root) command(ctx context.Context, overlay bool, binds []string, cwd, prog string, args ...string) *exec.Cmd {
	mode := "direct"
	if overlay {
		mode = "overlay"
	}
	// --kill-child: the namespace's first process dies with unshare, and
	// with it every process of the run (wineserver, leftover children).
	a := []string{"--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
		"/bin/sh", "-c", script, "wine-run", r.Dir, mode, cwd, fmt.Sprint(len(binds))}
	a = append(a, binds...)
	a = append(a, prog)
	a = append(a, args...)
	cmd := exec.CommandContext(ctx, "unshare", a...)
	env := os.Environ()
	if os.Getenv("WINEDEBUG") == "" {
		env = append(env, "WINEDEBUG=-all")
	}
	if os.Getenv("WINEDLLOVERRIDES") == "" {
		// No menu entries, .NET or Gecko installers: a second or two less
		// per run, and nothing the agent uses.
		env = append(env, "WINEDLLOVERRIDES=winemenubuilder.exe=d;mscoree=d;mshtml=d")
	}
	cmd.Env = append(env, "HOME=/root", "WINEPREFIX=/root/.wine")
	return cmd
}

// run runs a command, sending its output to log; on failure the error holds
// the last lines of the output.
func run(ctx context.Context, log io.Writer, name string, args ...string) error {
	var tail bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = io.MultiWriter(log, &tail)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		out := tail.String()
		if len(out) > 4000 {
			out = "..." + out[len(out)-4000:]
		}
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
