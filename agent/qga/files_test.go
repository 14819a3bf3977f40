//go:build !windows

package qga

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
)

type fileRead struct {
	Count  int64  `json:"count"`
	BufB64 string `json:"buf-b64"`
	EOF    bool   `json:"eof"`
}

func fileHost(t *testing.T) (*host, string, string) {
	t.Helper()
	dir := t.TempDir()
	rd, wr, both := filepath.Join(dir, "r"), filepath.Join(dir, "w"), filepath.Join(dir, "rw")
	for _, d := range []string{rd, wr, both} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.AllowedReadPaths = []string{rd, both}
	cfg.AllowedWritePaths = []string{wr, both}
	cfg.MaxFileSizeBytes = 64
	writeFiles(t, dir, map[string]string{"r/f.txt": "hello world", "outside.txt": "secret"})
	return newHost(t, cfg, "", nil), dir, both
}

func (h *host) open(path, mode string) string {
	h.t.Helper()
	var handle int64
	h.ret(`{"execute":"guest-file-open","arguments":{"path":"`+path+`","mode":"`+mode+`"}}`, &handle)
	return strconv.FormatInt(handle, 10)
}

func TestFileReadSeek(t *testing.T) {
	h, dir, _ := fileHost(t)
	fh := h.open(dir+"/r/f.txt", "r")
	if fh != "1000" {
		t.Errorf("first handle %s, want 1000 as qemu-ga", fh)
	}
	var r fileRead
	h.ret(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`,"count":5}}`, &r)
	if r != (fileRead{5, b64("hello"), false}) {
		t.Errorf("read 5: %+v", r)
	}
	h.ret(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, &r)
	if r != (fileRead{6, b64(" world"), true}) {
		t.Errorf("read rest: %+v", r)
	}
	h.ret(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, &r)
	if r != (fileRead{0, "", true}) {
		t.Errorf("read at end: %+v", r)
	}
	var pos struct {
		Position int64 `json:"position"`
		EOF      bool  `json:"eof"`
	}
	h.ret(`{"execute":"guest-file-seek","arguments":{"handle":`+fh+`,"offset":-3,"whence":"end"}}`, &pos)
	if pos.Position != 8 {
		t.Errorf("seek end-3: %+v", pos)
	}
	h.ret(`{"execute":"guest-file-seek","arguments":{"handle":`+fh+`,"offset":1,"whence":0}}`, &pos)
	if pos.Position != 1 {
		t.Errorf("seek set 1: %+v", pos)
	}
	h.ret(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`,"count":4}}`, &r)
	if r != (fileRead{4, b64("ello"), false}) {
		t.Errorf("read after seek: %+v", r)
	}
	h.fails(`{"execute":"guest-file-seek","arguments":{"handle":`+fh+`,"offset":0,"whence":7}}`, "invalid whence code 7")
	h.fails(`{"execute":"guest-file-seek","arguments":{"handle":`+fh+`,"offset":-30,"whence":"set"}}`, "failed to seek file: invalid argument")
	h.fails(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`,"count":-1}}`, "value '-1' is invalid for argument count")
	// max_file_size_bytes (64) bounds each read.
	h.fails(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`,"count":65}}`, "value '65' is invalid for argument count")
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"aGk="}}`, "failed to write to file: bad file descriptor")
	h.ret(`{"execute":"guest-file-flush","arguments":{"handle":`+fh+`}}`, &struct{}{})
	h.ret(`{"execute":"guest-file-close","arguments":{"handle":`+fh+`}}`, &struct{}{})
	h.fails(`{"execute":"guest-file-close","arguments":{"handle":`+fh+`}}`, "handle '"+fh+"' has not been found")
	h.fails(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, "has not been found")
}

func TestFileWrite(t *testing.T) {
	h, dir, both := fileHost(t)
	fh := h.open(dir+"/w/new.txt", "w")
	var w struct {
		Count int64 `json:"count"`
		EOF   bool  `json:"eof"`
	}
	h.ret(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"`+b64("hello")+`"}}`, &w)
	if w.Count != 5 || w.EOF {
		t.Errorf("write: %+v", w)
	}
	h.ret(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"`+b64("12345")+`","count":2}}`, &w)
	if w.Count != 2 {
		t.Errorf("write count 2: %+v", w)
	}
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"`+b64("12")+`","count":3}}`, "value '3' is invalid for argument count")
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"!!!"}}`, "Base64 data contains invalid characters")
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":5}}`, "Invalid parameter type for 'buf-b64', expected: string")
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`}}`, "Parameter 'buf-b64' is missing")
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":"x","buf-b64":"!!!"}}`, "Invalid parameter type for 'handle', expected: integer")
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":1,"buf-b64":"!!!"}}`, "handle '1' has not been found")
	// JSON escapes in the base64 text are the characters they stand for.
	h.ret(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"X\u0031\/=","count":0}}`, &w)
	if w.Count != 0 {
		t.Errorf("write of escaped base64 with count 0: %+v", w)
	}
	big := b64(strings.Repeat("x", 65))
	h.fails(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"`+big+`"}}`, "value '65' is invalid for argument count")
	h.fails(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, "failed to read file: bad file descriptor")
	h.ret(`{"execute":"guest-file-close","arguments":{"handle":`+fh+`}}`, &struct{}{})
	if b, _ := os.ReadFile(dir + "/w/new.txt"); string(b) != "hello12" {
		t.Errorf("file holds %q", b)
	}
	if fi, _ := os.Stat(dir + "/w/new.txt"); fi.Mode().Perm() != 0o644 {
		t.Errorf("created with %v", fi.Mode())
	}
	// Append, and read-write where both policies allow it.
	fh = h.open(both+"/x", "a+")
	h.ret(`{"execute":"guest-file-write","arguments":{"handle":`+fh+`,"buf-b64":"`+b64("abc")+`"}}`, &w)
	var r fileRead
	h.ret(`{"execute":"guest-file-seek","arguments":{"handle":`+fh+`,"offset":0,"whence":"set"}}`, &struct {
		Position int64 `json:"position"`
		EOF      bool  `json:"eof"`
	}{})
	h.ret(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, &r)
	if r.BufB64 != b64("abc") {
		t.Errorf("a+ read back %+v", r)
	}
}

// guest-file-open obeys the path policy in every mode.
func TestFileOpenPolicy(t *testing.T) {
	h, dir, _ := fileHost(t)
	if err := os.Symlink(dir+"/outside.txt", dir+"/w/link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("new", dir+"/w/inlink"); err != nil {
		t.Fatal(err)
	}
	// A link a guest user could have made is never followed.
	if err := os.Lchown(dir+"/w/inlink", 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(dir+"/r/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir+"/outside.txt", dir+"/r/escape"); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, mode, want string }{
		{dir + "/outside.txt", "r", "outside allowed_read_paths"},
		{dir + "/w/x", "r", "outside allowed_read_paths"},
		{dir + "/r/f.txt", "w", "outside allowed_write_paths"},
		{dir + "/r/f.txt", "r+", "outside allowed_write_paths"},
		{dir + "/w/x", "w+", "outside allowed_read_paths"},
		{dir + "/w/link", "w", "outside allowed_write_paths"},
		{dir + "/w/inlink", "a", "symbolic link owned by uid 1000"},
		{dir + "/r/escape", "r", "outside"},
		{dir + "/r/fifo", "r", "not a regular file"},
		{dir + "/r", "r", "not a regular file"},
		{dir + "/r/missing", "r", "not found"},
		{"relative", "r", "not absolute"},
		{dir + "/r/f.txt", "zz", "invalid file open mode 'zz'"},
	}
	for _, tt := range tests {
		h.fails(`{"execute":"guest-file-open","arguments":{"path":"`+tt.path+`","mode":"`+tt.mode+`"}}`, tt.want)
	}
	if b, _ := os.ReadFile(dir + "/outside.txt"); string(b) != "secret" {
		t.Errorf("outside file changed: %q", b)
	}
}

// Handles are bounded per session and closed when the session ends.
func TestFileHandlesBoundedAndClosed(t *testing.T) {
	h, dir, _ := fileHost(t)
	for range MaxOpenFiles {
		h.open(dir+"/r/f.txt", "r")
	}
	h.fails(`{"execute":"guest-file-open","arguments":{"path":"`+dir+`/r/f.txt"}}`, "too many open files")
	fds := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := fds()
	// End the session: close the host's end; ServeConn returns on EOF.
	h.c.(interface{ Close() error }).Close()
	if err := <-h.ok; err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
	h.ok <- nil // for the cleanup
	if after := fds(); after > before-MaxOpenFiles {
		t.Errorf("%d fds before the session ended, %d after: the handles were not closed", before, after)
	}
}

// watchedConn is a connection that, like the virtio-serial port, outlives
// its hosts and says when one leaves.
type watchedConn struct {
	net.Conn
	gone chan func()
}

func (c *watchedConn) OnHostGone(fn func()) { c.gone <- fn }

// On the port, a host that leaves loses its open files; the session goes on.
func TestFileHandlesClosedWhenHostLeaves(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"f.txt": "data"})
	cfg := config.Default()
	cfg.AllowedReadPaths = []string{dir}
	svc := methods.New(cfg, methods.Options{})
	d := New(svc, cfg, Options{})
	a, b := netPipe(t)
	wc := &watchedConn{Conn: a, gone: make(chan func(), 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeConn(ctx, wc) }()
	defer func() { cancel(); <-done }()
	hostGone := <-wc.gone
	h := &host{t: t, c: b, r: bufio.NewReader(b), d: d}
	fh := h.open(dir+"/f.txt", "r")
	var r fileRead
	h.ret(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, &r)
	hostGone()
	h.fails(`{"execute":"guest-file-read","arguments":{"handle":`+fh+`}}`, "handle '"+fh+"' has not been found")
	// The next host opens files again.
	h.open(dir+"/f.txt", "r")
}

// In a directory other users can write (sticky, like /tmp), guest-file-open
// neither writes into another user's file nor opens a file with several
// names, and truncates nothing before refusing.
func TestFileOpenSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o1777); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, shared, map[string]string{"theirs": "user data", "linked": "root data"})
	if err := os.Chown(filepath.Join(shared, "theirs"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(shared, "linked"), filepath.Join(shared, "linked2")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.AllowedReadPaths = []string{shared}
	cfg.AllowedWritePaths = []string{shared}
	h := newHost(t, cfg, "", nil)
	h.fails(`{"execute":"guest-file-open","arguments":{"path":"`+shared+`/theirs","mode":"w"}}`, "owned by uid 1000")
	h.fails(`{"execute":"guest-file-open","arguments":{"path":"`+shared+`/linked","mode":"w"}}`, "2 names")
	h.fails(`{"execute":"guest-file-open","arguments":{"path":"`+shared+`/linked","mode":"r"}}`, "2 names")
	for name, want := range map[string]string{"theirs": "user data", "linked": "root data"} {
		if b, _ := os.ReadFile(filepath.Join(shared, name)); string(b) != want {
			t.Errorf("%s holds %q after the refusal, want %q", name, b, want)
		}
	}
	// Reading another user's file is allowed (as file_read), and a new file
	// is created.
	h.open(shared+"/theirs", "r")
	h.open(shared+"/new", "w")
}
