package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// A stamp records, for one step, the hash of its inputs and the size and
// modification time of each output as written. The step is up to date when
// the inputs hash the same and every output is still as it was written.
type stamp struct {
	Key     string   `json:"key"`
	Outputs []output `json:"outputs"`
}

type output struct {
	Path    string `json:"path"` // relative to the stamp's dist
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	// SHA256 is the output's content hash, recorded for binaries (what
	// the steps after them are keyed by).
	SHA256 string `json:"sha256,omitempty"`
}

func stampPath(dist, step string) string {
	return filepath.Join(dist, ".stamps", step+".json")
}

// stampDist is the dist directory a stamp file belongs to.
func stampDist(st string) string { return filepath.Dir(filepath.Dir(st)) }

func readStamp(st string) (stamp, bool) {
	b, err := os.ReadFile(st)
	if err != nil {
		return stamp{}, false
	}
	var s stamp
	if json.Unmarshal(b, &s) != nil {
		return stamp{}, false
	}
	return s, true
}

// readStampOutputs returns the absolute output paths of a stamp with key.
func readStampOutputs(st, key string) ([]string, bool) {
	s, ok := readStamp(st)
	if !ok || s.Key != key {
		return nil, false
	}
	out := make([]string, len(s.Outputs))
	for i, o := range s.Outputs {
		out[i] = filepath.Join(stampDist(st), o.Path)
	}
	return out, true
}

func upToDate(st, key string, outputs []string) bool {
	s, ok := readStamp(st)
	if !ok || s.Key != key || len(s.Outputs) != len(outputs) {
		return false
	}
	for i, p := range outputs {
		o := s.Outputs[i]
		if filepath.Join(stampDist(st), o.Path) != p {
			return false
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != o.Size || fi.ModTime().UnixNano() != o.ModTime {
			return false
		}
	}
	return true
}

// upToDateSum is upToDate for a step with the one output p whose stamp
// records its SHA-256, and returns that hash.
func upToDateSum(st, key, p string) (string, bool) {
	if !upToDate(st, key, []string{p}) {
		return "", false
	}
	s, _ := readStamp(st)
	return s.Outputs[0].SHA256, s.Outputs[0].SHA256 != ""
}

// vouched reports whether the stamp st, whatever its key, records p as it
// is now: p is the file the step last wrote, not one damaged or put there
// since.
func vouched(st, p string) bool {
	s, ok := readStamp(st)
	if !ok {
		return false
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	for _, o := range s.Outputs {
		if filepath.Join(stampDist(st), o.Path) == p {
			return fi.Size() == o.Size && fi.ModTime().UnixNano() == o.ModTime
		}
	}
	return false
}

// writeBinaryStamp writes the stamp of a step with the one output p,
// recording p's SHA-256, and returns that hash.
func writeBinaryStamp(st, key, p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("stamp output: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return sum, writeStampSums(st, key, []string{p}, []string{sum})
}

func writeStamp(st, key string, outputs []string) error {
	return writeStampSums(st, key, outputs, nil)
}

// writeStampSums writes a stamp; sums, when given, are the outputs' SHA-256.
func writeStampSums(st, key string, outputs, sums []string) error {
	s := stamp{Key: key}
	for _, p := range outputs {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stamp output: %w", err)
		}
		rel, err := filepath.Rel(stampDist(st), p)
		if err != nil {
			return fmt.Errorf("stamp output %s: %w", p, err)
		}
		o := output{Path: rel, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		if sums != nil {
			o.SHA256 = sums[len(s.Outputs)]
		}
		s.Outputs = append(s.Outputs, o)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode stamp %s: %w", st, err)
	}
	if err := os.MkdirAll(filepath.Dir(st), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(st), err)
	}
	if err := os.WriteFile(st, b, 0o644); err != nil {
		return fmt.Errorf("write stamp %s: %w", st, err)
	}
	return nil
}

// removeStamp invalidates a step before it rebuilds, so that an interrupted
// build never leaves a stamp that vouches for half-written outputs.
func removeStamp(st string) { _ = os.Remove(st) }

func hashStrings(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
