package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// A quick stamp vouches for one target's artifacts: the snapshot of the
// target's inputs taken before the run that made them (see Take), and each
// artifact as it was written.
type quickStamp struct {
	Snapshot
	Artifacts []artifact `json:"artifacts"` // in the order the pipeline prints them
}

type artifact struct {
	Path    string `json:"path"` // relative to dist, slash-separated
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

// QuickStampPath is the quick stamp of target under dist.
func QuickStampPath(dist, target string) string {
	return filepath.Join(dist, ".stamps", "quick-"+target+".json")
}

func readQuick(dist, target string) (quickStamp, bool) {
	b, err := os.ReadFile(QuickStampPath(dist, target))
	if err != nil {
		return quickStamp{}, false
	}
	var s quickStamp
	if json.Unmarshal(b, &s) != nil || s.Key == "" || len(s.Artifacts) == 0 {
		return quickStamp{}, false
	}
	return s, true
}

// TakeFor is Take for target in the repository at root with the current
// environment, reusing the hashes its quick stamp recorded.
func TakeFor(root, target string) (*Snapshot, error) {
	var prev *Snapshot
	if st, ok := readQuick(filepath.Join(root, "dist"), target); ok {
		prev = &st.Snapshot
	}
	return Take(root, target, os.Environ(), prev)
}

// check reports whether every artifact is still the regular file it was
// when the stamp was written, and returns their sizes.
func (s quickStamp) check(dist string) ([]int64, bool) {
	sizes := make([]int64, len(s.Artifacts))
	for i, a := range s.Artifacts {
		fi, err := os.Stat(filepath.Join(dist, filepath.FromSlash(a.Path)))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != a.Size || fi.ModTime().UnixNano() != a.ModTime {
			return nil, false
		}
		sizes[i] = fi.Size()
	}
	return sizes, true
}

// RemoveQuickStamp invalidates target's quick stamp; the pipeline calls it,
// holding dist's lock, before it may change any artifact.
func RemoveQuickStamp(dist, target string) error {
	if err := os.Remove(QuickStampPath(dist, target)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove quick stamp: %w", err)
	}
	return nil
}

// WriteQuickStamp records that the artifacts (absolute paths under dist,
// in the order they were printed) are what target makes from the inputs
// of snap. Snap must have been taken before the run read its inputs, so that an edit made during the run makes the stamp stale; the
// pipeline calls it holding dist's lock, so no other run changes the
// artifacts meanwhile. The stamp is written to a temporary file and renamed,
// so a reader sees the old stamp, none, or the new one.
func WriteQuickStamp(dist, target string, snap *Snapshot, artifacts []string) error {
	if snap == nil || snap.Key == "" {
		return fmt.Errorf("quick stamp of %s: no snapshot", target)
	}
	s := quickStamp{Snapshot: *snap}
	for _, p := range artifacts {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("quick stamp: %w", err)
		}
		rel, err := filepath.Rel(dist, p)
		if err != nil || !filepath.IsLocal(rel) {
			return fmt.Errorf("quick stamp: artifact %s is not under %s", p, dist)
		}
		s.Artifacts = append(s.Artifacts, artifact{Path: filepath.ToSlash(rel), Size: fi.Size(), ModTime: fi.ModTime().UnixNano()})
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode quick stamp: %w", err)
	}
	return writeAtomic(QuickStampPath(dist, target), b)
}
