package launcher

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvmmanager/guest-agent/build/version"
)

// InputDirs are the directories of the repository whose every file is an
// input of a quick stamp: the module's packages (the agent, and the builder
// whose code makes the artifacts) and what the packages and the ISO are made
// of. With InputFiles, they hold every file the pipeline reads.
var InputDirs = []string{"agent", "build", "magefiles", "installers", "packaging"}

// InputFiles are the single files of the repository a quick stamp covers.
var InputFiles = []string{"go.mod", "go.sum"}

// SecretEnvPrefixes name the signing environment (build/signing's
// KVMMANAGER_SIGNING_KEY, KVMMANAGER_APK_KEY_FILE, ...). A quick stamp must
// not hold a hash of a key or passphrase, nor trust a key file unchanged:
// with any of them set, Key refuses and every run goes through the pipeline,
// which keys its steps by the keys' public identity.
var SecretEnvPrefixes = []string{"KVMMANAGER_SIGNING_", "KVMMANAGER_APK_"}

// ErrSigning is Key's error when signing keys are in the environment.
var ErrSigning = errors.New("signing keys are set: no quick stamp")

// envPrefixes select the environment a quick stamp covers: the go command's
// (GOFLAGS, GOAMD64, GOTOOLCHAIN, GOWORK, ...; the pipeline's go build sees
// them), cgo's, the build identity's overrides and the project's own.
var envPrefixes = []string{"GO", "CGO_", "KVMMANAGER_", version.EnvSourceDateEpoch + "="}

// A Snapshot is the state of a target's inputs at one moment: Key hashes
// them all, and Files records what each input file was, so that the next
// Take can trust a file's content hash by its metadata instead of reading
// it again.
type Snapshot struct {
	Key   string      `json:"key"`
	Taken int64       `json:"taken_ns"` // Unix nanoseconds, before any input was read
	Files []fileState `json:"files"`

	// The parts of Key that the builder's own stamp is keyed by too.
	env       []string // the environment Key covers, sorted
	configSum string   // of the go command's env file and go.work files
}

// fileState is one input file as Take found it.
type fileState struct {
	Path  string `json:"path"` // relative to the root, slash-separated
	Mode  uint32 `json:"mode"` // fs.FileMode
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	CTime int64  `json:"ctime_ns"` // 0 where the system does not tell
	Ino   uint64 `json:"ino"`
	Sum   string `json:"sha256"` // of the content, or of a link's target
}

// racyWindow is how long before a snapshot a file must have last changed
// for the next Take to trust its recorded hash by its metadata: a file
// written again in the same tick of the file system's clock as the write
// the snapshot saw could keep its size, times and inode, and a file system
// may count time in coarse steps (the kernel's tick; seconds or two on some).
// A file changed within the window before the snapshot is read again.
const racyWindow = 2 * time.Second

// Take returns the snapshot of everything target's artifacts are made from,
// as the repository at root and environ (os.Environ) are now: the target,
// the Go version, the build identity (version.Resolve: version, commit,
// SOURCE_DATE_EPOCH), the Go and project environment, the go command's
// configuration file and any go.work above root, and the name, mode and
// content of every file in InputFiles and under InputDirs.
//
// An input file whose size, modification and change times, inode and mode
// are those prev (a snapshot taken earlier, or nil) recorded, and that had
// not changed within racyWindow before prev was taken, keeps prev's content
// hash; any other is read. The change time cannot be set back by a program
// (unlike the modification time), so a file written since prev cannot pass.
//
// The inputs are a superset of what the pipeline keys its steps by (which
// adds the builder's own code): an edit of a test or a README under those
// directories makes the next run go through the pipeline, which then finds
// its steps up to date.
func Take(root, target string, environ []string, prev *Snapshot) (*Snapshot, error) {
	snap := &Snapshot{Taken: time.Now().UnixNano()}
	h := sha256.New()
	field := func(name, value string) { fmt.Fprintf(h, "%s=%d:%s\n", name, len(value), value) }
	field("quick", "2")
	field("target", target)
	field("go", runtime.Version())

	var env []string
	for _, kv := range environ {
		for _, p := range SecretEnvPrefixes {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, p) && v != "" {
				return nil, ErrSigning
			}
		}
		for _, p := range envPrefixes {
			if strings.HasPrefix(kv, p) {
				env = append(env, kv)
				break
			}
		}
	}
	sort.Strings(env)
	for _, kv := range env {
		field("env", kv)
	}
	snap.env = env

	// git runs while the files are read.
	type identity struct {
		info version.Info
		err  error
	}
	idc := make(chan identity, 1)
	go func() {
		info, err := version.Resolve(root)
		idc <- identity{info, err}
	}()

	ch := sha256.New()
	if err := hashConfig(ch, root, environ); err != nil {
		<-idc
		return nil, err
	}
	snap.configSum = hex.EncodeToString(ch.Sum(nil))
	field("config", snap.configSum)
	files, err := inputFiles(root, prev)
	if err != nil {
		<-idc
		return nil, err
	}
	snap.Files = files
	for _, f := range files {
		fmt.Fprintf(h, "file %s %s %d %s\n", f.Path, fs.FileMode(f.Mode).String(), f.Size, f.Sum)
	}
	id := <-idc
	if id.err != nil {
		return nil, id.err
	}
	field("version", id.info.Version)
	field("commit", id.info.Commit)
	field("source_date_epoch", strconv.FormatInt(id.info.SourceDateEpoch, 10))
	snap.Key = hex.EncodeToString(h.Sum(nil))
	return snap, nil
}

// hashConfig hashes the go command's configuration that is not in the
// environment: its env file (go env -w) and any go.work in root or above.
func hashConfig(h hash.Hash, root string, environ []string) error {
	goenv := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GOENV="); ok {
			goenv = v
		}
	}
	if goenv == "" {
		if dir, err := os.UserConfigDir(); err == nil {
			goenv = filepath.Join(dir, "go", "env")
		}
	}
	files := []string{}
	if goenv != "" && goenv != "off" {
		files = append(files, goenv)
	}
	for dir := root; ; {
		files = append(files, filepath.Join(dir, "go.work"), filepath.Join(dir, "go.work.sum"))
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("quick stamp input %s: %w", p, err)
		}
		fmt.Fprintf(h, "config %s %d\n", p, len(b))
		h.Write(b)
	}
	return nil
}

// inputFiles returns the state of every file in InputFiles and under
// InputDirs, in lexical order of their paths.
func inputFiles(root string, prev *Snapshot) ([]fileState, error) {
	known := map[string]*fileState{}
	if prev != nil {
		for i := range prev.Files {
			known[prev.Files[i].Path] = &prev.Files[i]
		}
	}
	trustedBefore := int64(0)
	if prev != nil {
		trustedBefore = prev.Taken - int64(racyWindow)
	}
	var out []fileState
	add := func(rel string, fi fs.FileInfo) error {
		st := fileState{Path: filepath.ToSlash(rel), Mode: uint32(fi.Mode()), Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
		st.CTime, st.Ino = changeTime(fi)
		if k := known[st.Path]; k != nil && st.CTime != 0 && st.CTime < trustedBefore &&
			k.Mode == st.Mode && k.Size == st.Size && k.MTime == st.MTime && k.CTime == st.CTime && k.Ino == st.Ino {
			st.Sum = k.Sum
		} else {
			sum, err := contentSum(filepath.Join(root, rel), fi)
			if err != nil {
				return err
			}
			st.Sum = sum
		}
		out = append(out, st)
		return nil
	}
	for _, f := range InputFiles {
		fi, err := os.Lstat(filepath.Join(root, f))
		if err != nil {
			return nil, fmt.Errorf("quick stamp input: %w", err)
		}
		if err := add(f, fi); err != nil {
			return nil, err
		}
	}
	for _, d := range InputDirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == filepath.Join(root, d) {
					return nil
				}
				return err
			}
			if e.IsDir() {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			return add(rel, fi)
		})
		if err != nil {
			return nil, fmt.Errorf("list quick stamp inputs under %s: %w", filepath.Join(root, d), err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// contentSum hashes the content of the file p (fi: its Lstat), the target
// of a symbolic link, or nothing for other kinds of file.
func contentSum(p string, fi fs.FileInfo) (string, error) {
	h := sha256.New()
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return "", fmt.Errorf("quick stamp input: %w", err)
		}
		h.Write([]byte(target))
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("quick stamp input: %w", err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
