//go:build !windows

package methods

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// fileTree is a temporary layout with an allowed directory, an outside
// directory and the usual traps.
type fileTree struct {
	base, allowed, outside, prefix, single string
}

func newFileTree(t *testing.T) fileTree {
	t.Helper()
	base := t.TempDir()
	ft := fileTree{
		base:    base,
		allowed: filepath.Join(base, "allowed"),
		outside: filepath.Join(base, "outside"),
		prefix:  filepath.Join(base, "allowedfoo"),
		single:  filepath.Join(base, "single.txt"),
	}
	for _, d := range []string{ft.allowed, ft.outside, ft.prefix, filepath.Join(ft.allowed, "sub")} {
		mustMkdir(t, d)
	}
	mustWrite(t, filepath.Join(ft.allowed, "hello.txt"), "hello\n", 0o644)
	mustWrite(t, filepath.Join(ft.allowed, "binary"), "\xff\xfe\x00\x01", 0o644)
	mustWrite(t, filepath.Join(ft.allowed, "empty"), "", 0o644)
	mustWrite(t, filepath.Join(ft.outside, "secret"), "secret\n", 0o600)
	mustWrite(t, filepath.Join(ft.prefix, "x"), "prefix\n", 0o644)
	mustWrite(t, ft.single, "single\n", 0o644)
	mustSymlink(t, "../outside/secret", filepath.Join(ft.allowed, "link-out"))
	mustSymlink(t, ft.outside, filepath.Join(ft.allowed, "dir-out"))
	mustSymlink(t, "hello.txt", filepath.Join(ft.allowed, "link-in"))
	if err := syscall.Mkfifo(filepath.Join(ft.allowed, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ft
}

func mustMkdir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func (ft fileTree) service(t *testing.T, edit func(*config.Config)) *Service {
	return newService(t, func(c *config.Config) {
		c.AllowedReadPaths = []string{ft.allowed, ft.single, "/proc"}
		c.AllowedWritePaths = []string{ft.allowed, ft.single}
		if edit != nil {
			edit(c)
		}
	})
}

func TestFileRead(t *testing.T) {
	ft := newFileTree(t)
	tests := []struct {
		name     string
		edit     func(*config.Config)
		params   any
		want     string // content as returned
		wantSize int64
		wantEnc  string
	}{
		{"utf8 default", nil, map[string]any{"path": filepath.Join(ft.allowed, "hello.txt")}, "hello\n", 6, "utf8"},
		{"base64", nil, map[string]any{"path": filepath.Join(ft.allowed, "binary"), "encoding": "base64"}, "//4AAQ==", 4, "base64"},
		{"empty file", nil, map[string]any{"path": filepath.Join(ft.allowed, "empty")}, "", 0, "utf8"},
		{"symlink staying inside", nil, map[string]any{"path": filepath.Join(ft.allowed, "link-in")}, "hello\n", 6, "utf8"},
		{"single-file entry", nil, map[string]any{"path": ft.single}, "single\n", 7, "utf8"},
		{"exactly at the limit", func(c *config.Config) { c.MaxFileSizeBytes = 6 }, map[string]any{"path": filepath.Join(ft.allowed, "hello.txt")}, "hello\n", 6, "utf8"},
		{"proc file of stat size 0", nil, map[string]any{"path": "/proc/self/comm"}, "methods.test\n", 13, "utf8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ft.service(t, tt.edit)
			var r protocol.FileReadResult
			mustCall(t, s.Handlers()[protocol.MethodFileRead], tt.params, &r)
			if r.Content != tt.want || r.SizeBytes != tt.wantSize || r.Encoding != tt.wantEnc {
				t.Fatalf("got %+v, want content %q size %d encoding %s", r, tt.want, tt.wantSize, tt.wantEnc)
			}
		})
	}
}

func TestFileReadRefused(t *testing.T) {
	ft := newFileTree(t)
	small := func(c *config.Config) { c.MaxFileSizeBytes = 5 }
	tests := []struct {
		name   string
		edit   func(*config.Config)
		params any
		code   int
		parts  []string
	}{
		{"outside", nil, map[string]any{"path": filepath.Join(ft.outside, "secret")}, protocol.CodePermissionDenied,
			[]string{`path "` + filepath.Join(ft.outside, "secret") + `" is outside allowed_read_paths`}},
		{"shadow", nil, map[string]any{"path": "/etc/shadow"}, protocol.CodePermissionDenied, []string{`path "/etc/shadow" is outside allowed_read_paths`}},
		{"prefix confusion", nil, map[string]any{"path": filepath.Join(ft.prefix, "x")}, protocol.CodePermissionDenied, []string{"outside"}},
		{"dotdot", nil, map[string]any{"path": ft.allowed + "/../outside/secret"}, protocol.CodePermissionDenied, []string{"outside"}},
		{"symlink out", nil, map[string]any{"path": filepath.Join(ft.allowed, "link-out")}, protocol.CodePermissionDenied, []string{"outside"}},
		{"symlinked dir out", nil, map[string]any{"path": filepath.Join(ft.allowed, "dir-out", "secret")}, protocol.CodePermissionDenied, []string{"outside"}},
		{"proc magic link", nil, map[string]any{"path": "/proc/self/root/etc/passwd"}, protocol.CodePermissionDenied, []string{"outside"}},
		{"proc fd magic link", nil, map[string]any{"path": "/proc/self/cwd/files_test.go"}, protocol.CodePermissionDenied, []string{"outside"}},
		{"relative", nil, map[string]any{"path": "etc/hostname"}, protocol.CodeInvalidParams, []string{"absolute"}},
		{"missing path", nil, map[string]any{}, protocol.CodeInvalidParams, []string{"path"}},
		{"trailing slash", nil, map[string]any{"path": filepath.Join(ft.allowed, "hello.txt") + "/"}, protocol.CodeInvalidParams, []string{"must name a file"}},
		{"bad encoding", nil, map[string]any{"path": ft.single, "encoding": "hex"}, protocol.CodeInvalidParams, []string{"encoding"}},
		{"not found", nil, map[string]any{"path": filepath.Join(ft.allowed, "nope")}, protocol.CodeNotFound, []string{"not found"}},
		{"component is a file", nil, map[string]any{"path": filepath.Join(ft.allowed, "hello.txt", "x")}, protocol.CodeNotFound, nil},
		{"directory", nil, map[string]any{"path": filepath.Join(ft.allowed, "sub")}, protocol.CodeInvalidParams, []string{"not a regular file", "directory"}},
		{"fifo (would block)", nil, map[string]any{"path": filepath.Join(ft.allowed, "fifo")}, protocol.CodeInvalidParams, []string{"named pipe"}},
		{"over size by stat", small, map[string]any{"path": filepath.Join(ft.allowed, "hello.txt")}, protocol.CodePermissionDenied, []string{"6 bytes", "max_file_size_bytes (5)"}},
		{"over size, stat size 0 (proc)", small, map[string]any{"path": "/proc/self/status"}, protocol.CodePermissionDenied, []string{"max_file_size_bytes (5)"}},
		{"not UTF-8", nil, map[string]any{"path": filepath.Join(ft.allowed, "binary")}, protocol.CodeInvalidParams, []string{"UTF-8", "base64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ft.service(t, tt.edit)
			_, perr := call(t, s.Handlers()[protocol.MethodFileRead], tt.params)
			wantError(t, perr, tt.code, tt.parts...)
		})
	}
}

// readContent never reads more than max+1 bytes of an endless source.
func TestReadContentStopsAtLimit(t *testing.T) {
	src := &endless{}
	_, _, err := readContent(src, 0, 1000, protocol.EncodingBase64, noReserve)
	var tl *tooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("err = %v, want too large", err)
	}
	if src.n > 1001+32<<10 {
		t.Fatalf("read %d bytes of an endless file with max 1000", src.n)
	}
}

type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	e.n += len(p)
	return len(p), nil
}

func TestFileWrite(t *testing.T) {
	ft := newFileTree(t)
	type check func(t *testing.T)
	fileIs := func(p, content string, mode os.FileMode) check {
		return func(t *testing.T) {
			t.Helper()
			got, err := os.ReadFile(p)
			if err != nil || string(got) != content {
				t.Fatalf("%s = %q, %v; want %q", p, got, err, content)
			}
			fi, err := os.Stat(p)
			if err != nil || fi.Mode() != mode {
				t.Fatalf("%s mode %v, %v; want %v", p, fi.Mode(), err, mode)
			}
		}
	}
	existing := filepath.Join(ft.allowed, "existing")
	mustWrite(t, existing, "old", 0o640)
	bin := "\x00\x01\xfe\xff binary"
	tests := []struct {
		name   string
		params map[string]any
		size   int64
		check  check
	}{
		{"new utf8 file gets 0644", map[string]any{"path": filepath.Join(ft.allowed, "new.txt"), "content": "héllo"},
			6, fileIs(filepath.Join(ft.allowed, "new.txt"), "héllo", 0o644)},
		{"base64", map[string]any{"path": filepath.Join(ft.allowed, "bin"), "content": base64.StdEncoding.EncodeToString([]byte(bin)), "encoding": "base64"},
			int64(len(bin)), fileIs(filepath.Join(ft.allowed, "bin"), bin, 0o644)},
		{"permissions 0600", map[string]any{"path": filepath.Join(ft.allowed, "p1"), "content": "x", "permissions": "0600"},
			1, fileIs(filepath.Join(ft.allowed, "p1"), "x", 0o600)},
		{"permissions 755 without leading zero", map[string]any{"path": filepath.Join(ft.allowed, "p2"), "content": "x", "permissions": "755"},
			1, fileIs(filepath.Join(ft.allowed, "p2"), "x", 0o755)},
		{"replace keeps the mode", map[string]any{"path": existing, "content": "new content"},
			11, fileIs(existing, "new content", 0o640)},
		{"create_dirs", map[string]any{"path": filepath.Join(ft.allowed, "a", "b", "c.txt"), "content": "deep", "create_dirs": true},
			4, fileIs(filepath.Join(ft.allowed, "a", "b", "c.txt"), "deep", 0o644)},
		{"empty content", map[string]any{"path": filepath.Join(ft.allowed, "empty2"), "content": ""},
			0, fileIs(filepath.Join(ft.allowed, "empty2"), "", 0o644)},
		{"single-file entry", map[string]any{"path": ft.single, "content": "replaced"},
			8, fileIs(ft.single, "replaced", 0o644)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ft.service(t, nil)
			var r protocol.FileWriteResult
			mustCall(t, s.Handlers()[protocol.MethodFileWrite], tt.params, &r)
			if r.BytesWritten != tt.size || r.Path != tt.params["path"] {
				t.Fatalf("result %+v, want %d bytes and the path", r, tt.size)
			}
			tt.check(t)
			assertNoTempFiles(t, filepath.Dir(tt.params["path"].(string)))
		})
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".kvmmanager-") {
			t.Fatalf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

// snapshot lists every path under dir, to prove a refused write changed nothing.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(p + "\n")
		if d.Type().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Write(c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFileWriteRefusedWithoutSideEffects(t *testing.T) {
	ft := newFileTree(t)
	mustWrite(t, filepath.Join(ft.allowed, "keep"), "keep", 0o644)
	mustSymlink(t, "keep", filepath.Join(ft.allowed, "user-link"))
	if err := os.Lchown(filepath.Join(ft.allowed, "user-link"), 65534, 65534); err != nil {
		t.Skipf("needs root to make a link of another user: %v", err)
	}
	small := func(c *config.Config) { c.MaxFileSizeBytes = 4 }
	tests := []struct {
		name   string
		edit   func(*config.Config)
		params any
		code   int
		parts  []string
	}{
		{"outside", nil, map[string]any{"path": filepath.Join(ft.outside, "new"), "content": "x"}, protocol.CodePermissionDenied, []string{"outside allowed_write_paths"}},
		{"outside with create_dirs", nil, map[string]any{"path": filepath.Join(ft.outside, "d1", "d2", "f"), "content": "x", "create_dirs": true}, protocol.CodePermissionDenied, []string{"outside"}},
		{"prefix confusion with create_dirs", nil, map[string]any{"path": filepath.Join(ft.prefix, "d1", "f"), "content": "x", "create_dirs": true}, protocol.CodePermissionDenied, []string{"outside"}},
		{"symlinked dir out with create_dirs", nil, map[string]any{"path": filepath.Join(ft.allowed, "dir-out", "d1", "f"), "content": "x", "create_dirs": true}, protocol.CodePermissionDenied, []string{"outside"}},
		{"dotdot", nil, map[string]any{"path": ft.allowed + "/sub/../../outside/new", "content": "x", "create_dirs": true}, protocol.CodePermissionDenied, []string{".."}},
		{"dotdot staying inside", nil, map[string]any{"path": ft.allowed + "/newdir/../f", "content": "x", "create_dirs": true}, protocol.CodePermissionDenied, []string{".."}},
		{"final symlink out", nil, map[string]any{"path": filepath.Join(ft.allowed, "link-out"), "content": "pwned"}, protocol.CodePermissionDenied, []string{"outside allowed_write_paths"}},
		{"final symlink of another user", nil, map[string]any{"path": filepath.Join(ft.allowed, "user-link"), "content": "x"}, protocol.CodePermissionDenied, []string{"symbolic link owned by uid 65534"}},
		{"over size utf8", small, map[string]any{"path": filepath.Join(ft.allowed, "big"), "content": "12345"}, protocol.CodePermissionDenied, []string{"5 bytes", "max_file_size_bytes (4)"}},
		{"over size base64", small, map[string]any{"path": filepath.Join(ft.allowed, "big"), "content": "MTIzNDU=", "encoding": "base64"}, protocol.CodePermissionDenied, []string{"max_file_size_bytes (4)"}},
		{"over size checked before path", small, map[string]any{"path": filepath.Join(ft.outside, "big"), "content": "12345"}, protocol.CodePermissionDenied, []string{"max_file_size_bytes"}},
		{"bad base64", nil, map[string]any{"path": filepath.Join(ft.allowed, "b64"), "content": "not base64!", "encoding": "base64"}, protocol.CodeInvalidParams, []string{"base64"}},
		{"base64 with non-zero padding bits", nil, map[string]any{"path": filepath.Join(ft.allowed, "b64"), "content": "YR==", "encoding": "base64"}, protocol.CodeInvalidParams, []string{"base64"}},
		{"bad permissions", nil, map[string]any{"path": filepath.Join(ft.allowed, "p"), "content": "x", "permissions": "0888"}, protocol.CodeInvalidParams, []string{"permissions"}},
		{"setuid refused", nil, map[string]any{"path": filepath.Join(ft.allowed, "p"), "content": "x", "permissions": "4755"}, protocol.CodeInvalidParams, []string{"permissions"}},
		{"symbolic permissions", nil, map[string]any{"path": filepath.Join(ft.allowed, "p"), "content": "x", "permissions": "rw-r--r--"}, protocol.CodeInvalidParams, []string{"permissions"}},
		{"bad encoding", nil, map[string]any{"path": filepath.Join(ft.allowed, "p"), "content": "x", "encoding": "latin1"}, protocol.CodeInvalidParams, []string{"encoding"}},
		{"relative", nil, map[string]any{"path": "tmp/x", "content": "x"}, protocol.CodeInvalidParams, []string{"absolute"}},
		{"trailing slash", nil, map[string]any{"path": filepath.Join(ft.allowed, "newfile") + "/", "content": "x"}, protocol.CodeInvalidParams, []string{"must name a file"}},
		{"missing dir without create_dirs", nil, map[string]any{"path": filepath.Join(ft.allowed, "nodir", "f"), "content": "x"}, protocol.CodeNotFound, []string{"create_dirs"}},
		{"target is a directory", nil, map[string]any{"path": filepath.Join(ft.allowed, "sub"), "content": "x"}, protocol.CodeInvalidParams, []string{"directory"}},
		{"target is a fifo", nil, map[string]any{"path": filepath.Join(ft.allowed, "fifo"), "content": "x"}, protocol.CodeInvalidParams, []string{"named pipe"}},
		{"allowed root itself", nil, map[string]any{"path": ft.allowed, "content": "x"}, protocol.CodeInvalidParams, []string{"directory"}},
		{"unknown field", nil, map[string]any{"path": filepath.Join(ft.allowed, "p"), "content": "x", "mode": "0644"}, protocol.CodeInvalidParams, []string{`"mode"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, ft.base)
			s := ft.service(t, tt.edit)
			_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], tt.params)
			wantError(t, perr, tt.code, tt.parts...)
			if after := snapshot(t, ft.base); after != before {
				t.Fatalf("a refused write changed the file tree:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// A write that fails after the temporary file was written leaves the old
// file intact and no temporary file behind.
func TestFileWriteFailureKeepsOldFile(t *testing.T) {
	ft := newFileTree(t)
	target := filepath.Join(ft.allowed, "precious")
	mustWrite(t, target, "original", 0o600)
	s := ft.service(t, nil)
	var sawTemp bool
	s.beforeRename = func(tmp string) error {
		data, err := os.ReadFile(filepath.Join(ft.allowed, tmp))
		sawTemp = err == nil && string(data) == "replacement"
		return errors.New("disk on fire")
	}
	_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": target, "content": "replacement"})
	wantError(t, perr, protocol.CodeCommandFailed, "disk on fire")
	if !sawTemp {
		t.Fatal("the new content was not in a temporary file next to the target")
	}
	if got, _ := os.ReadFile(target); string(got) != "original" {
		t.Fatalf("target = %q after a failed write, want the original", got)
	}
	assertNoTempFiles(t, ft.allowed)
}

// Replacing a file never keeps another user's ownership or inode: the new
// file is the agent's, so its old owner cannot change what the host wrote
// (before the host runs it, say). Where that owner may create files (a
// directory other users can write), the agent refuses to replace it.
func TestFileWriteNeverKeepsAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	ft := newFileTree(t)
	shared := filepath.Join(ft.allowed, "shared")
	mustMkdir(t, shared)
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		code int // 0: success
	}{
		{"private directory", ft.allowed, 0},
		{"sticky world-writable directory", shared, protocol.CodePermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := filepath.Join(tt.dir, "owned")
			mustWrite(t, target, "x", 0o644)
			if err := os.Chown(target, 1234, 5678); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(target)
			s := ft.service(t, nil)
			_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": target, "content": "y", "permissions": "0755"})
			fi, err := os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if tt.code != 0 {
				wantError(t, perr, tt.code, "owned by uid 1234")
				if !os.SameFile(before, fi) || st.Uid != 1234 {
					t.Fatalf("refused write changed the file")
				}
				return
			}
			if perr != nil {
				t.Fatal(perr)
			}
			if st.Uid != 0 || st.Gid != 0 || os.SameFile(before, fi) {
				t.Fatalf("owner %d:%d (same inode %v), want a new file owned by 0:0", st.Uid, st.Gid, os.SameFile(before, fi))
			}
		})
	}
}

// A file written with base64 reads back identically, at the size limit.
func TestFileRoundTripAtLimit(t *testing.T) {
	ft := newFileTree(t)
	const size = 1 << 20
	s := ft.service(t, func(c *config.Config) { c.MaxFileSizeBytes = size })
	data := bytes.Repeat([]byte{0, 1, 2, 0xff, 'a'}, size/5+1)[:size]
	p := filepath.Join(ft.allowed, "round")
	mustCall(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{
		"path": p, "content": base64.StdEncoding.EncodeToString(data), "encoding": "base64",
	}, nil)
	var r protocol.FileReadResult
	mustCall(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": p, "encoding": "base64"}, &r)
	got, err := base64.StdEncoding.DecodeString(r.Content)
	if err != nil || !bytes.Equal(got, data) || r.SizeBytes != size {
		t.Fatalf("round trip: %d bytes, size_bytes %d, err %v", len(got), r.SizeBytes, err)
	}
}

// A file that has no data yet (like /proc/kmsg) fails at once instead of
// parking the request.
func TestNonblockReaderNeverWaits(t *testing.T) {
	r, w, err := os.Pipe() // a pollable descriptor with no data and a live writer
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	nr, err := newNonblockReader(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := readContent(nr, 0, 100, protocol.EncodingUTF8, noReserve); !errors.Is(err, errWouldBlock) {
		t.Fatalf("err = %v, want errWouldBlock", err)
	}
	if _, err := w.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, n, err := readContent(nr, 0, 100, protocol.EncodingUTF8, noReserve)
	if err != nil || got != "data" || n != 4 {
		t.Fatalf("readContent = %q, %d, %v", got, n, err)
	}
}

// One link rule for reads and writes: root's link (one name, target inside
// the allowed paths) is followed by file_write too; the link stays and its
// target is replaced.
func TestFileWriteThroughRootLink(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	mustCall(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": filepath.Join(ft.allowed, "link-in"), "content": "via link\n"}, nil)
	if fi, err := os.Lstat(filepath.Join(ft.allowed, "link-in")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link-in is no longer a link: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(ft.allowed, "hello.txt")); string(b) != "via link\n" {
		t.Fatalf("target content %q", b)
	}
}

// noReserve is a memory budget without bound.
func noReserve(int64) error { return nil }

// TestFileWriteSpooled sends file_writes longer than the server's read
// buffer through a server that spools their content (as the agent does):
// the file gets exactly the content whatever the member order or encoding,
// and bad content found in the middle of the stream is a clear error that
// leaves the old file as it was and no temporary or spool file behind.
func TestFileWriteSpooled(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	spoolDir := t.TempDir()
	srv := server.New(s.Handlers(), server.Options{Spooled: s.SpooledMethods(), SpoolDir: spoolDir})
	data := make([]byte, 3*240000) // no padding: repeated, still base64
	rand.NewChaCha8([32]byte{5}).Read(data)
	b64 := base64.StdEncoding.EncodeToString(data)
	text := strings.Repeat("héllo wörld ", 60<<10)
	path := filepath.Join(ft.allowed, "spooled")
	bad := []byte(b64)
	bad[len(bad)/2] = '*'
	midPad := base64.StdEncoding.EncodeToString(data[:300<<10+1]) + b64
	newDir := filepath.Join(ft.allowed, "made")
	newDirFile := filepath.Join(newDir, "spooled")
	req := func(params string) string {
		return `{"jsonrpc":"2.0","method":"file_write","params":` + params + `,"id":7}`
	}
	tests := []struct {
		name   string
		line   string
		want   []byte // nil: an error with code, the old file kept
		code   int
		inText string
	}{
		{"base64, content last", req(`{"path":"` + path + `","encoding":"base64","content":"` + b64 + `"}`), data, 0, ""},
		{"base64, content first", req(`{"content":"` + b64 + `","path":"` + path + `","encoding":"base64"}`), data, 0, ""},
		{"base64 with escaped slashes", req(`{"path":"` + path + `","content":"` + strings.ReplaceAll(b64, "/", `\/`) + `","encoding":"base64"}`), data, 0, ""},
		{"utf8 text", req(`{"path":"` + path + `","content":"` + text + `"}`), []byte(text), 0, ""},
		{"utf8 text with escapes", req(`{"path":"` + path + `","content":"\u0041` + text + `"}`), []byte("A" + text), 0, ""},
		{"a bad byte in the middle", req(`{"path":"` + path + `","encoding":"base64","content":"` + string(bad) + `"}`), nil, protocol.CodeInvalidParams, "base64"},
		{"padding in the middle", req(`{"path":"` + path + `","encoding":"base64","content":"` + midPad + `"}`), nil, protocol.CodeInvalidParams, "base64"},
		{"a bad byte, create_dirs", req(`{"path":"` + newDirFile + `","create_dirs":true,"encoding":"base64","content":"` + string(bad) + `"}`), nil, protocol.CodeInvalidParams, "base64"},
		{"invalid UTF-8 text", req(`{"path":"` + path + `","content":"` + text + "\xc3\x28" + `"}`), nil, protocol.CodeInvalidParams, "UTF-8"},
		{"content twice", req(`{"path":"` + path + `","encoding":"base64","content":"` + b64 + `","content":"YQ=="}`), nil, protocol.CodeInvalidParams, "twice"},
		{"over max_file_size_bytes", req(`{"path":"` + path + `","encoding":"base64","content":"` + strings.Repeat(b64, 16) + `"}`), nil, protocol.CodePermissionDenied, "max_file_size_bytes"},
		{"broken JSON after the content", req(`{"path":"` + path + `","encoding":"base64","content":"` + b64 + `",}`), nil, protocol.CodeParseError, "JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustWrite(t, path, "old\n", 0o644)
			a, b := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- srv.ServeConn(context.Background(), b); b.Close() }()
			go io.WriteString(a, tt.line+"\n")
			line, err := bufio.NewReader(a).ReadBytes('\n')
			if err != nil {
				t.Fatal(err)
			}
			a.Close()
			<-done
			var resp struct {
				Result *protocol.FileWriteResult
				Error  *protocol.Error
			}
			if err := json.Unmarshal(line, &resp); err != nil {
				t.Fatalf("reply %.300s: %v", line, err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if resp.Error == nil || resp.Error.Code != tt.code || !strings.Contains(resp.Error.Message, tt.inText) {
					t.Fatalf("reply %.300s, want error %d mentioning %q", line, tt.code, tt.inText)
				}
				if string(got) != "old\n" {
					t.Fatalf("the old file changed: %.40q", got)
				}
				if _, err := os.Lstat(newDir); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a refused write created %s (%v)", newDir, err)
				}
			} else if resp.Error != nil || !bytes.Equal(got, tt.want) || resp.Result.BytesWritten != int64(len(tt.want)) {
				t.Fatalf("reply %.300s; file %d bytes, want %d", line, len(got), len(tt.want))
			}
			for _, d := range []string{ft.allowed, spoolDir} {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if strings.Contains(e.Name(), "kvmmanager") {
						t.Errorf("left behind: %s", filepath.Join(d, e.Name()))
					}
				}
			}
		})
	}
}
