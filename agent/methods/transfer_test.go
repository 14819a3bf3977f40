//go:build !windows

package methods

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// A file several times max_file_size_bytes goes up in chunks, is invisible
// at its path until the commit, and comes back in chunks with its sha256.
func TestChunkedRoundTrip(t *testing.T) {
	ft := newFileTree(t)
	const limit = 1000
	s := ft.service(t, func(c *config.Config) { c.MaxFileSizeBytes = limit })
	data := make([]byte, 4*limit+123)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	sum := sha256.Sum256(data)
	target := filepath.Join(ft.allowed, "big.bin")
	mustWrite(t, target, "old", 0o640)
	w := s.Handlers()[protocol.MethodFileWrite]

	var id string
	for off := 0; off < len(data); off += limit {
		end := min(off+limit, len(data))
		p := map[string]any{"path": target, "content": base64.StdEncoding.EncodeToString(data[off:end]), "encoding": "base64", "offset": off}
		if id != "" {
			p["upload_id"] = id
		}
		if end == len(data) {
			p["commit"] = true
			p["size_bytes"] = len(data)
			p["sha256"] = hex.EncodeToString(sum[:])
		}
		var r protocol.FileWriteChunkResult
		mustCall(t, w, p, &r)
		if r.SizeBytes != int64(end) || r.BytesWritten != int64(end-off) {
			t.Fatalf("chunk at %d: %+v", off, r)
		}
		id = r.UploadID
		if end < len(data) {
			if b, _ := os.ReadFile(target); string(b) != "old" {
				t.Fatalf("target changed before the commit: %d bytes", len(b))
			}
		} else if !r.Committed || r.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("commit: %+v", r)
		}
	}
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("committed file: %d bytes, %v", len(got), err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the old file's 0640", fi.Mode())
	}
	assertNoTempFiles(t, ft.allowed)

	// Read back in chunks.
	r := s.Handlers()[protocol.MethodFileRead]
	var back []byte
	for off := int64(0); ; {
		var c protocol.FileReadChunkResult
		mustCall(t, r, map[string]any{"path": target, "encoding": "base64", "offset": off, "length": 700}, &c)
		b, _ := base64.StdEncoding.DecodeString(c.Content)
		back = append(back, b...)
		off += c.SizeBytes
		if c.FileSize != int64(len(data)) || c.Offset != off-c.SizeBytes {
			t.Fatalf("chunk %+v", c)
		}
		if c.EOF {
			break
		}
		if c.SizeBytes == 0 {
			t.Fatal("no progress")
		}
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read back differs")
	}
	var st protocol.FileStatResult
	mustCall(t, s.Handlers()[protocol.MethodFileStat], map[string]any{"path": target, "sha256": true}, &st)
	if st.SHA256 != hex.EncodeToString(sum[:]) || st.SizeBytes != int64(len(data)) || st.Type != "file" || st.Mode != "0640" {
		t.Errorf("file_stat %+v", st)
	}
	// Without offset or length, file_read keeps 1.0's limit.
	_, perr := call(t, r, map[string]any{"path": target})
	wantError(t, perr, protocol.CodePermissionDenied, "over max_file_size_bytes")
}

// A retried chunk (same offset) replaces the first try; a smaller offset
// truncates; a gap, a wrong hash or size, another path are refused and the
// target is untouched; abort removes the temporary file.
func TestUploadSemantics(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	w := s.Handlers()[protocol.MethodFileWrite]
	target := filepath.Join(ft.allowed, "u.txt")
	var r protocol.FileWriteChunkResult
	mustCall(t, w, map[string]any{"path": target, "content": "hello ", "offset": 0}, &r)
	id := r.UploadID
	chunk := func(off int, content string, extra map[string]any) (protocol.FileWriteChunkResult, *protocol.Error) {
		p := map[string]any{"path": target, "content": content, "offset": off, "upload_id": id}
		for k, v := range extra {
			p[k] = v
		}
		var r protocol.FileWriteChunkResult
		b, perr := call(t, w, p)
		if perr == nil {
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
		}
		return r, perr
	}
	if r, perr := chunk(6, "world", nil); perr != nil || r.SizeBytes != 11 {
		t.Fatalf("append: %+v %v", r, perr)
	}
	if r, perr := chunk(6, "WORLD", nil); perr != nil || r.SizeBytes != 11 {
		t.Fatalf("retry: %+v %v", r, perr)
	}
	if r, perr := chunk(5, "!", nil); perr != nil || r.SizeBytes != 6 {
		t.Fatalf("truncate: %+v %v", r, perr)
	}
	for _, tt := range []struct {
		off   int
		extra map[string]any
		code  int
		want  string
	}{
		{7, nil, protocol.CodeInvalidParams, "outside the upload"},
		{6, map[string]any{"commit": true, "size_bytes": 99}, protocol.CodeInvalidParams, "not the expected size_bytes 99"},
		{6, map[string]any{"commit": true, "sha256": strings.Repeat("0", 64)}, protocol.CodeInvalidParams, "not the expected"},
		{6, map[string]any{"path": filepath.Join(ft.allowed, "other")}, protocol.CodeInvalidParams, "is for path"},
		{6, map[string]any{"upload_id": "nope"}, protocol.CodeNotFound, "not found"},
	} {
		_, perr := chunk(tt.off, "", tt.extra)
		wantError(t, perr, tt.code, tt.want)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("target exists before the commit: %v", err)
	}
	sum := sha256.Sum256([]byte("hello!"))
	if r, perr := chunk(6, "", map[string]any{"commit": true, "sha256": hex.EncodeToString(sum[:]), "permissions": "0600"}); perr != nil || !r.Committed {
		t.Fatalf("commit: %+v %v", r, perr)
	}
	if b, _ := os.ReadFile(target); string(b) != "hello!" {
		t.Fatalf("committed %q", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	if _, perr := chunk(6, "x", nil); perr == nil || perr.Code != protocol.CodeNotFound {
		t.Errorf("chunk after commit: %v", perr)
	}

	// Abort.
	mustCall(t, w, map[string]any{"path": target, "content": "zzz", "offset": 0}, &r)
	id = r.UploadID
	if r, perr := chunk(0, "", map[string]any{"abort": true}); perr != nil || !r.Aborted {
		t.Fatalf("abort: %+v %v", r, perr)
	}
	assertNoTempFiles(t, ft.allowed)
	if b, _ := os.ReadFile(target); string(b) != "hello!" {
		t.Fatalf("abort changed the target: %q", b)
	}
}

// Uploads obey file_write's path policy; a temporary file swapped by
// another name is refused.
func TestUploadPolicy(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	w := s.Handlers()[protocol.MethodFileWrite]
	for _, tt := range []struct {
		path string
		code int
		want string
	}{
		{filepath.Join(ft.outside, "x"), protocol.CodePermissionDenied, "outside"},
		{filepath.Join(ft.allowed, "fifo"), protocol.CodeInvalidParams, "not a regular file"},
		{filepath.Join(ft.allowed, "missing", "x"), protocol.CodeNotFound, "create_dirs"},
		{filepath.Join(ft.allowed, "dir-out", "x"), protocol.CodePermissionDenied, ""},
	} {
		_, perr := call(t, w, map[string]any{"path": tt.path, "content": "x", "offset": 0})
		if perr == nil || perr.Code != tt.code || !strings.Contains(perr.Message, tt.want) {
			t.Errorf("%s: %v, want %d %q", tt.path, perr, tt.code, tt.want)
		}
	}
	_, perr := call(t, w, map[string]any{"path": filepath.Join(ft.allowed, "y"), "content": "x", "offset": 5})
	wantError(t, perr, protocol.CodeInvalidParams, "offset")

	target := filepath.Join(ft.allowed, "swap.txt")
	var r protocol.FileWriteChunkResult
	mustCall(t, w, map[string]any{"path": target, "content": "abc", "offset": 0}, &r)
	tmps, _ := filepath.Glob(filepath.Join(ft.allowed, ".swap.txt.kvmmanager-upload-*.part"))
	if len(tmps) != 1 {
		t.Fatalf("temporary files %v", tmps)
	}
	os.Remove(tmps[0])
	mustWrite(t, tmps[0], "planted", 0o644)
	_, perr = call(t, w, map[string]any{"path": target, "content": "d", "offset": 3, "upload_id": r.UploadID, "commit": true})
	wantError(t, perr, protocol.CodePermissionDenied, "replaced")
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("a swapped upload was committed")
	}
}

// file_stat: metadata inside either list, the hash only inside
// allowed_read_paths, links not followed.
func TestFileStat(t *testing.T) {
	ft := newFileTree(t)
	wonly := filepath.Join(ft.base, "wonly")
	mustMkdir(t, wonly)
	mustWrite(t, filepath.Join(wonly, "f"), "abc", 0o600)
	s := ft.service(t, func(c *config.Config) { c.AllowedWritePaths = append(c.AllowedWritePaths, wonly) })
	h := s.Handlers()[protocol.MethodFileStat]
	sum := sha256.Sum256([]byte("hello\n"))
	for _, tt := range []struct {
		path   string
		hash   bool
		typ    string
		size   int64
		sha    string
		errStr string
	}{
		{filepath.Join(ft.allowed, "hello.txt"), true, "file", 6, hex.EncodeToString(sum[:]), ""},
		{filepath.Join(ft.allowed, "hello.txt"), false, "file", 6, "", ""},
		{filepath.Join(ft.allowed, "sub"), true, "directory", -1, "", ""},
		{filepath.Join(ft.allowed, "fifo"), false, "fifo", 0, "", ""},
		{filepath.Join(wonly, "f"), false, "file", 3, "", ""},
		{filepath.Join(wonly, "f"), true, "", 0, "", "outside allowed_read_paths"},
		{filepath.Join(ft.outside, "secret"), false, "", 0, "", "outside"},
		{filepath.Join(ft.allowed, "missing"), false, "", 0, "", "not found"},
		{"relative", false, "", 0, "", "not absolute"},
	} {
		var r protocol.FileStatResult
		b, perr := call(t, h, map[string]any{"path": tt.path, "sha256": tt.hash})
		if tt.errStr != "" {
			if perr == nil || !strings.Contains(perr.Message, tt.errStr) {
				t.Errorf("%s: %v, want %q", tt.path, perr, tt.errStr)
			}
			continue
		}
		if perr != nil {
			t.Errorf("%s: %v", tt.path, perr)
			continue
		}
		_ = json.Unmarshal(b, &r)
		if r.Type != tt.typ || (tt.size >= 0 && r.SizeBytes != tt.size) || r.SHA256 != tt.sha || r.MtimeNS == 0 {
			t.Errorf("%s: %+v", tt.path, r)
		}
	}
}

// An upload nobody continues is removed with its temporary file, without
// another request.
func TestUploadIdleRemoved(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	s.uploadIdle = 50 * time.Millisecond
	var r protocol.FileWriteChunkResult
	target := filepath.Join(ft.allowed, "idle.txt")
	mustCall(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": target, "content": "abc", "offset": 0}, &r)
	for i := 0; ; i++ {
		tmps, _ := filepath.Glob(filepath.Join(ft.allowed, ".idle.txt.kvmmanager-upload-*.part"))
		if len(tmps) == 0 {
			break
		}
		if i == 1000 {
			t.Fatalf("idle upload's temporary file stays: %v", tmps)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": target, "content": "d", "offset": 3, "upload_id": r.UploadID})
	wantError(t, perr, protocol.CodeNotFound, "idle")
}
