package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// inputs reads the files a run's steps are keyed by, each file once per
// run: go/build's view of a package for every platform, and the hash of
// every step's inputs, come from the same bytes.
type inputs struct {
	root  string
	mu    sync.Mutex
	files map[string]*inputFile // by absolute path
}

type inputFile struct {
	once sync.Once
	data []byte
	mode fs.FileMode
	sum  [sha256.Size]byte
	err  error
}

func newInputs(root string) *inputs {
	return &inputs{root: root, files: map[string]*inputFile{}}
}

// read returns the file at the absolute path p, reading it the first time.
func (in *inputs) read(p string) *inputFile {
	in.mu.Lock()
	f, ok := in.files[p]
	if !ok {
		f = &inputFile{}
		in.files[p] = f
	}
	in.mu.Unlock()
	f.once.Do(func() {
		h, err := os.Open(p)
		if err != nil {
			f.err = err
			return
		}
		defer h.Close()
		fi, err := h.Stat()
		if err != nil {
			f.err = err
			return
		}
		f.mode = fi.Mode()
		var b bytes.Buffer
		b.Grow(int(fi.Size()) + 1)
		if _, err := b.ReadFrom(h); err != nil {
			f.err = err
			return
		}
		f.data = b.Bytes()
		f.sum = sha256.Sum256(f.data)
	})
	return f
}

// open serves go/build's reads from the cache.
func (in *inputs) open(p string) (io.ReadCloser, error) {
	f := in.read(p)
	if f.err != nil {
		return nil, f.err
	}
	return io.NopCloser(bytes.NewReader(f.data)), nil
}

// hashFiles hashes the names, executable bits and contents of the files
// (relative to root, sorted).
func (in *inputs) hashFiles(rels []string) (string, error) {
	rels = append([]string(nil), rels...)
	sort.Strings(rels)
	h := sha256.New()
	for _, rel := range rels {
		p := filepath.Join(in.root, rel)
		f := in.read(p)
		if f.err != nil {
			return "", fmt.Errorf("hash input %s: %w", p, f.err)
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%x\x00", filepath.ToSlash(rel), f.mode.Perm()&0o111, len(f.data), f.sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashTree hashes every regular file under the given directories of root
// (missing directories hash as empty: the step itself reports what it needs).
func (in *inputs) hashTree(dirs []string) (string, error) {
	var rels []string
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(in.root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
				rel, err := filepath.Rel(in.root, p)
				if err != nil {
					return err
				}
				rels = append(rels, rel)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("list inputs under %s: %w", filepath.Join(in.root, d), err)
		}
	}
	return in.hashFiles(rels)
}

// builderSum is the SHA-256 of the running executable: the code that makes
// the artifacts (the builder, or a test of this package), which every step
// is keyed by, so that a change of the pipeline's own code (how a package
// or the ISO is laid out, the linker flags) rebuilds what it makes. Any
// change of the builder counts, including one that would not change an
// artifact: the steps then run again and find the same bytes.
var builderSum = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the running builder: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("hash the running builder: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash the running builder %s: %w", exe, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
})
