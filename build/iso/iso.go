// Package iso writes the installer disc, kvmmanager-guest-agent.iso, in pure
// Go with github.com/kdomanski/iso9660: plain ISO 9660 whose names are checked
// to survive as-is in a Linux guest, and whose dates are all rewritten to
// SOURCE_DATE_EPOCH so that two builds of one commit are byte-identical.
package iso

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/kdomanski/iso9660"
)

// VolumeID is the volume label of the installer disc.
const VolumeID = "KVMMANAGER_AGENT"

// Entry is one file on the disc: either Src (a local file) or Data.
type Entry struct {
	Path string // slash-separated path on the disc, e.g. "packages/amd64/kvmmanager-agent.deb"
	Src  string // local file to copy; empty when Data is used
	Data []byte
}

// Options configure Write.
type Options struct {
	VolumeID string    // default VolumeID
	Time     time.Time // every date on the disc (SOURCE_DATE_EPOCH)
}

// Write builds the image at out from entries. It fails, naming the file,
// when a name would not appear as itself in a Linux guest or two entries
// share a path. The image is written to a temporary file and renamed.
func Write(out string, entries []Entry, opts Options) (err error) {
	if opts.VolumeID == "" {
		opts.VolumeID = VolumeID
	}
	if err := checkEntries(entries); err != nil {
		return err
	}
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("create iso staging directory: %w", err)
	}
	defer func() {
		if cerr := w.Cleanup(); cerr != nil && err == nil {
			err = fmt.Errorf("remove iso staging directory: %w", cerr)
		}
	}()
	for _, e := range entries {
		if e.Src != "" {
			if err := w.AddLocalFile(e.Src, e.Path); err != nil {
				return fmt.Errorf("stage %s as %s: %w", e.Src, e.Path, err)
			}
			continue
		}
		if err := w.AddFile(bytes.NewReader(e.Data), e.Path); err != nil {
			return fmt.Errorf("stage %s: %w", e.Path, err)
		}
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(out), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("create temporary image next to %s: %w", out, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := w.WriteTo(tmp, opts.VolumeID); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := Normalize(tmp, opts.Time); err != nil {
		return fmt.Errorf("normalize %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), out, err)
	}
	return nil
}

// checkEntries applies the name rule and rejects duplicates and names that
// are both a file and a directory.
func checkEntries(entries []Entry) error {
	files := map[string]bool{}
	dirs := map[string]bool{}
	for _, e := range entries {
		if err := CheckPath(e.Path); err != nil {
			return err
		}
		if files[e.Path] {
			return fmt.Errorf("iso name %q is given twice", e.Path)
		}
		files[e.Path] = true
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		if files[d] {
			return fmt.Errorf("iso name %q is both a file and a directory", d)
		}
	}
	return nil
}

// ReadAll returns every regular file of the image at p by guest-visible path.
func ReadAll(p string) (map[string][]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return nil, fmt.Errorf("read iso %s: %w", p, err)
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, fmt.Errorf("read root of %s: %w", p, err)
	}
	out := map[string][]byte{}
	var walk func(dir *iso9660.File, prefix string) error
	walk = func(dir *iso9660.File, prefix string) error {
		children, err := dir.GetChildren()
		if err != nil {
			return fmt.Errorf("list %s/%s: %w", p, prefix, err)
		}
		for _, c := range children {
			name := path.Join(prefix, c.Name())
			if c.IsDir() {
				if err := walk(c, name); err != nil {
					return err
				}
				continue
			}
			b, err := io.ReadAll(c.Reader())
			if err != nil {
				return fmt.Errorf("read %s in %s: %w", name, p, err)
			}
			out[name] = b
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// Paths returns the sorted paths of entries, for messages and checksums.
func Paths(entries []Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Path
	}
	sort.Strings(out)
	return out
}

// Contents returns the bytes of e.
func (e Entry) Contents() ([]byte, error) {
	if e.Src == "" {
		return e.Data, nil
	}
	b, err := os.ReadFile(e.Src)
	if err != nil {
		return nil, fmt.Errorf("read %s for iso path %s: %w", e.Src, e.Path, err)
	}
	return b, nil
}
