package methods

// The red-team attacks of security round 2, each replayed by a real
// unprivileged user (uid 65534) racing the agent where the attack is a race.
// Races run a fixed number of agent requests against a swapping process;
// nothing here asserts on time.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

const nobody = 65534

// raceRounds is how many requests a race test sends against the swapper.
const raceRounds = 300

// asNobody runs script with sh as uid/gid 65534 in dir. With wait it runs to
// completion (and must succeed); otherwise it runs until the test ends.
func asNobody(t *testing.T, dir, script string, wait bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as uid 65534")
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Setpgid: true}
	if wait {
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("as uid %d: %s: %v: %s", nobody, script, err, out)
		}
		return
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swapper: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
}

// sharedTree is a temporary tree that uid 65534 can reach: base (0755,
// root) holding pub (1777, root: like /tmp) and rootsvc (0755, root, with
// root's files).
type sharedTree struct {
	base, pub, rootsvc string
}

func newSharedTree(t *testing.T) sharedTree {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	for d := base; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := sharedTree{base: base, pub: filepath.Join(base, "pub"), rootsvc: filepath.Join(base, "pub", "rootsvc")}
	mustMkdir(t, st.rootsvc)
	if err := os.Chmod(st.pub, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(st.rootsvc, "conf"), "root's config\n", 0o600)
	return st
}

func (st sharedTree) service(t *testing.T, edit func(*config.Config)) *Service {
	return newService(t, func(c *config.Config) {
		c.AllowedReadPaths = []string{st.pub}
		c.AllowedWritePaths = []string{st.pub}
		if edit != nil {
			edit(c)
		}
	})
}

// callNoHang runs a handler with a failsafe: a request that never returns
// is the attack succeeding (the agent's slot is gone), reported as such.
func callNoHang(t *testing.T, h func(context.Context, json.RawMessage) (any, error), params any) (any, *protocol.Error) {
	t.Helper()
	raw, _ := json.Marshal(params)
	type res struct {
		v   any
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := h(context.Background(), raw)
		ch <- res{v, err}
	}()
	select {
	case r := <-ch:
		var pe *protocol.Error
		if r.err != nil && !errors.As(r.err, &pe) {
			t.Fatalf("handler error %T %v", r.err, r.err)
		}
		return r.v, pe
	case <-time.After(time.Minute):
		t.Fatalf("request %s never returned: it would hold a concurrency slot for ever", raw)
		return nil, nil
	}
}

func fileOwner(t *testing.T, p string) (uint32, bool) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, false
	}
	return fi.Sys().(*syscall.Stat_t).Uid, true
}

// Owner kept on overwrite: the user prepares deploy.sh, the host writes a
// script there and later runs it. The agent must never leave the host's
// file owned by the user (who could rewrite it before the exec): it refuses
// to replace the user's file, and a file it writes is root's, on a new inode.
func TestAttackOwnerKeptOnOverwrite(t *testing.T) {
	st := newSharedTree(t)
	s := st.service(t, nil)
	target := filepath.Join(st.pub, "deploy.sh")
	write := func() *protocol.Error {
		_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{
			"path": target, "content": "#!/bin/sh\necho host\n", "permissions": "0755"})
		return perr
	}

	asNobody(t, st.pub, ": > deploy.sh", true)
	perr := write()
	wantError(t, perr, protocol.CodePermissionDenied, "owned by uid 65534")
	if uid, _ := fileOwner(t, target); uid != nobody {
		t.Fatalf("refused write changed the owner to %d", uid)
	}

	// Racing: the user keeps re-creating the file and opening it up.
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	asNobody(t, st.pub, `while :; do : > deploy.sh; chmod 666 deploy.sh; done 2>/dev/null`, false)
	wrote := 0
	for range raceRounds {
		perr := write()
		if perr != nil {
			wantError(t, perr, protocol.CodePermissionDenied, "owned by uid 65534")
			continue
		}
		wrote++
		// The user cannot remove root's file from the sticky directory,
		// so what the host wrote stays root's.
		if uid, ok := fileOwner(t, target); ok && uid != 0 {
			t.Fatalf("after a successful write deploy.sh is owned by uid %d", uid)
		}
		break
	}
	t.Logf("%d refused, %d written", raceRounds-wrote, wrote)
	if wrote == 1 {
		// The user can no longer change it.
		cmd := exec.Command("/bin/sh", "-c", "echo pwned > deploy.sh")
		cmd.Dir = st.pub
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if cmd.Run() == nil {
			t.Fatal("uid 65534 could rewrite the file the host wrote")
		}
	}
}

// A directory swapped for a FIFO: opening it (to fsync the parent after the
// rename) blocked for ever. Every open is now O_DIRECTORY|O_NONBLOCK and
// the fsync uses the directory handle the write resolved.
func TestAttackFIFOSwapOfParent(t *testing.T) {
	st := newSharedTree(t)
	s := st.service(t, nil)
	asNobody(t, st.pub, "mkdir -p u/fd", true)
	asNobody(t, filepath.Join(st.pub, "u"), `while :; do mv fd fd.d; mkfifo fd; rm -f fd; mv fd.d fd; done 2>/dev/null`, false)
	path := filepath.Join(st.pub, "u", "fd", "x")
	ok, failed := 0, 0
	for i := range raceRounds {
		_, perr := callNoHang(t, s.fileWrite, map[string]any{"path": path, "content": strconv.Itoa(i)})
		if perr == nil {
			ok++
		} else {
			failed++
		}
		_, _ = callNoHang(t, s.fileRead, map[string]any{"path": path})
	}
	t.Logf("%d writes done, %d refused or failed; none blocked", ok, failed)
}

// An allowed entry the user can rename is swapped for a symlink to a root
// directory: writes must not land there, reads must not return its files.
func TestAttackSymlinkedAllowedEntry(t *testing.T) {
	st := newSharedTree(t)
	upload := filepath.Join(st.pub, "upload")
	asNobody(t, st.pub, "mkdir upload", true)
	s := newService(t, func(c *config.Config) {
		c.AllowedReadPaths = []string{upload}
		c.AllowedWritePaths = []string{upload}
	})
	write := func() *protocol.Error {
		_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": filepath.Join(upload, "x"), "content": "host"})
		return perr
	}
	read := func() (string, *protocol.Error) {
		raw, perr := call(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": filepath.Join(upload, "conf")})
		var r protocol.FileReadResult
		if perr == nil {
			_ = json.Unmarshal(raw, &r)
		}
		return r.Content, perr
	}
	asNobody(t, st.pub, "mv upload upload.old && ln -s rootsvc upload", true)
	wantError(t, write(), protocol.CodePermissionDenied, "symbolic link in its own path")
	_, perr := read()
	wantError(t, perr, protocol.CodePermissionDenied, "symbolic link in its own path")

	asNobody(t, st.pub, "rm upload && mv upload.old upload", true)
	asNobody(t, st.pub, `while :; do mv upload upload.old; ln -s rootsvc upload; rm upload; mv upload.old upload; done 2>/dev/null`, false)
	for range raceRounds {
		perr := write()
		if perr != nil && perr.Code != protocol.CodePermissionDenied && perr.Code != protocol.CodeNotFound {
			t.Fatalf("write: unexpected error %d %s", perr.Code, perr.Message)
		}
		if content, perr := read(); perr == nil && content == "root's config\n" {
			t.Fatal("read returned root's file through the swapped entry")
		}
		if _, err := os.Lstat(filepath.Join(st.rootsvc, "x")); err == nil {
			t.Fatal("a write landed in root's directory through the swapped entry")
		}
	}
}

// A symlink the user plants in a sticky directory (pub/victim -> rootsvc)
// is not followed: the kernel's protected_symlinks rule, applied by the
// agent (only root's links are followed).
func TestAttackPlantedSymlinkInStickyDir(t *testing.T) {
	st := newSharedTree(t)
	s := st.service(t, nil)
	victim := filepath.Join(st.pub, "victim", "conf")
	asNobody(t, st.pub, "ln -s rootsvc victim", true)
	_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": victim, "content": "pwned"})
	wantError(t, perr, protocol.CodePermissionDenied, "symbolic link owned by uid 65534")
	_, perr = call(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": victim})
	wantError(t, perr, protocol.CodePermissionDenied, "symbolic link owned by uid 65534")
	// The last component too.
	asNobody(t, st.pub, "ln -s rootsvc/conf direct", true)
	_, perr = call(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": filepath.Join(st.pub, "direct")})
	wantError(t, perr, protocol.CodePermissionDenied, "symbolic link owned by uid 65534")

	asNobody(t, st.pub, "rm victim", true)
	asNobody(t, st.pub, `while :; do ln -s rootsvc victim; rm -f victim; done 2>/dev/null`, false)
	for range raceRounds {
		_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": victim, "content": "pwned"})
		if perr == nil {
			// Only possible into a real directory of that name, which
			// the swapper never makes.
			t.Fatal("write through the planted link succeeded")
		}
	}
	if b, _ := os.ReadFile(filepath.Join(st.rootsvc, "conf")); string(b) != "root's config\n" {
		t.Fatalf("root's file was overwritten: %q", b)
	}
}

// A hard link to root's file in a shared directory (what a user can make
// where fs.protected_hardlinks is 0) is refused for reads and writes.
func TestAttackHardlinkInSharedDir(t *testing.T) {
	st := newSharedTree(t)
	s := st.service(t, nil)
	hl := filepath.Join(st.pub, "hl")
	if err := os.Link(filepath.Join(st.rootsvc, "conf"), hl); err != nil {
		t.Fatal(err)
	}
	_, perr := call(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": hl})
	wantError(t, perr, protocol.CodePermissionDenied, "2 names (hard links)")
	_, perr = call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": hl, "content": "x"})
	wantError(t, perr, protocol.CodePermissionDenied, "2 names (hard links)")
	if b, _ := os.ReadFile(filepath.Join(st.rootsvc, "conf")); string(b) != "root's config\n" {
		t.Fatalf("root's file changed: %q", b)
	}
}

// README's example works with the default configuration: /etc/os-release
// is root's link to ../usr/lib/os-release on Debian 12.
func TestReadmeOSReleaseWithDefaults(t *testing.T) {
	want, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Skipf("no /etc/os-release: %v", err)
	}
	s := New(config.Default(), Options{Power: &fakePower{t: t}})
	var r protocol.FileReadResult
	mustCall(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": "/etc/os-release"}, &r)
	if r.Content != string(want) {
		t.Fatalf("content %q, want %q", r.Content, want)
	}
}

// Commands outlived their timeout (setsid) and their normal exit
// (background children). Both containers, the cgroup and the subreaper
// fallback, must leave nothing behind.
func TestAttackCommandLeavesNoProcess(t *testing.T) {
	needSystemCommands(t, "sh", "sleep", "setsid")
	modes := []struct {
		name     string
		noCgroup bool
	}{{"cgroup", false}, {"subreaper", true}}
	cases := []struct {
		name    string
		script  string // writes the pids to keep an eye on to $1
		timeout bool
	}{
		{"setsid grandchild after timeout", `(setsid sh -c 'echo $$ >> "$1"; exec sleep 772' sh "$1" </dev/null >/dev/null 2>&1 &); sleep 100`, true},
		{"background child after normal exit", `sleep 771 </dev/null >/dev/null 2>&1 & echo $! >> "$1"; exit 0`, false},
		{"double-forked setsid daemon after normal exit", `(setsid sh -c 'echo $$ >> "$1"; exec sleep 773' sh "$1" </dev/null >/dev/null 2>&1 &); sleep 0.2; exit 0`, false},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if !m.noCgroup {
				if _, err := cgroupBase(); err != nil {
					t.Skipf("no writable cgroup2 here: %v", err)
				}
			}
			noCgroups.Store(m.noCgroup)
			defer noCgroups.Store(false)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					pidFile := filepath.Join(t.TempDir(), "pids")
					s := newService(t, func(cfg *config.Config) { cfg.CommandTimeoutSeconds = 1 })
					_, perr := call(t, s.Handlers()[protocol.MethodExecCommand], map[string]any{
						"command": "sh", "args": []string{"-c", c.script, "sh", pidFile}})
					if c.timeout {
						wantError(t, perr, protocol.CodeTimeout, "every process it started were killed")
					} else if perr != nil {
						t.Fatal(perr)
					}
					raw, err := os.ReadFile(pidFile)
					if err != nil {
						t.Fatal(err)
					}
					pids := strings.Fields(string(raw))
					if len(pids) == 0 {
						t.Fatal("no pid recorded")
					}
					for _, f := range pids {
						pid, _ := strconv.Atoi(f)
						if alive(pid) {
							_ = syscall.Kill(pid, syscall.SIGKILL)
							t.Errorf("process %d outlived its command", pid)
						}
					}
				})
			}
		})
	}
}

// The fallback cannot tell which command orphaned a process by its parent
// alone; the tag keeps one command's end from killing another running
// command's daemon.
func TestSubreaperSparesOtherRunningCommands(t *testing.T) {
	needSystemCommands(t, "sh", "sleep", "setsid")
	noCgroups.Store(true)
	defer noCgroups.Store(false)
	s := newService(t, func(cfg *config.Config) { cfg.CommandTimeoutSeconds = 30 })
	pidFile := filepath.Join(t.TempDir(), "pid")
	ready := filepath.Join(t.TempDir(), "ready")
	var wg sync.WaitGroup
	wg.Add(1)
	var longErr *protocol.Error
	go func() {
		defer wg.Done()
		// Orphans a daemon, then waits until told to finish.
		_, longErr = func() (json.RawMessage, *protocol.Error) {
			raw, _ := json.Marshal(map[string]any{"command": "sh", "args": []string{"-c",
				`(setsid sh -c 'echo $$ > "$1"; exec sleep 774' sh "$1" </dev/null >/dev/null 2>&1 &); while [ ! -e "$2" ]; do sleep 0.05; done`, "sh", pidFile, ready}})
			_, err := s.execCommand(context.Background(), raw)
			var pe *protocol.Error
			errors.As(err, &pe)
			return nil, pe
		}()
	}()
	var pid int
	for range 200 {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("the long command recorded no daemon pid")
	}
	// Another command ends meanwhile: the first one's daemon stays.
	mustCall(t, s.Handlers()[protocol.MethodExecCommand], execParams("true"), nil)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("another command's end killed the running command's daemon: %v", err)
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if longErr != nil {
		t.Fatal(longErr)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("daemon %d outlived its own command", pid)
	}
}

// 2 MiB of NUL bytes on each stream made a 12.6 MB reply: "\u0000" is 6
// bytes on the wire. max_output_bytes now bounds the JSON text.
func TestAttackNULOutputBounded(t *testing.T) {
	needSystemCommands(t, "sh", "head")
	s := newService(t, nil) // max_output_bytes 1 MiB
	raw := mustCall(t, s.Handlers()[protocol.MethodExecCommand],
		execParams("sh", "-c", "head -c 2097152 /dev/zero; head -c 2097152 /dev/zero >&2"), nil)
	var r protocol.ExecResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	limit := s.cfg.MaxOutputBytes
	if wireLen(r.Stdout) > limit || wireLen(r.Stderr) > limit || !r.StdoutTruncated || !r.StderrTruncated {
		t.Fatalf("stdout %d and stderr %d wire bytes (truncated %v %v), want at most %d each",
			wireLen(r.Stdout), wireLen(r.Stderr), r.StdoutTruncated, r.StderrTruncated, limit)
	}
	if len(raw) > 2*limit+1024 {
		t.Fatalf("reply is %d bytes for a cap of %d per stream", len(raw), limit)
	}
}

// find is not in the default whitelist (find -fprintf writes files, -exec
// runs anything): with the whitelist on and the defaults, it is refused.
func TestAttackFindNotWhitelistedByDefault(t *testing.T) {
	s := newService(t, func(c *config.Config) {
		d := config.Default()
		c.CommandWhitelistEnabled = true
		c.CommandWhitelist = d.CommandWhitelist
	})
	_, perr := call(t, s.Handlers()[protocol.MethodExecCommand], execParams("find", "/tmp", "-maxdepth", "0", "-fprintf", "/tmp/x", "pwn"))
	wantError(t, perr, protocol.CodePermissionDenied, "command_whitelist")
}

// A statfs that never returns (a FUSE daemon that stopped answering, a dead
// NFS server) held a new thread per get_disk_usage: now one per mount point
// at most, and fuse.* mounts are not asked at all.
func TestAttackHungStatfsNoThreadLeak(t *testing.T) {
	mountinfo := "1 0 254:1 / / rw - ext4 /dev/vda1 rw\n" +
		"2 1 0:50 / /mnt/nfs rw - nfs4 srv:/x rw\n" +
		"3 1 0:51 / /home/u/fuse rw - fuse.sshfs u@h: rw\n"
	s := New(seedConfig(t), Options{HostRoot: fakeHost(t, map[string]string{"proc/self/mountinfo": mountinfo}), Power: &fakePower{t: t}})
	// Long enough for the quick "/" to answer on a loaded machine (the race
	// detector, other tests): only the first hung call waits this long.
	s.statfsTimeout = 500 * time.Millisecond
	release := make(chan struct{})
	var nfsCalls, fuseCalls atomic.Int32
	s.statfs = func(path string, st *unix.Statfs_t) error {
		switch path {
		case "/mnt/nfs":
			nfsCalls.Add(1)
			<-release
		case "/home/u/fuse":
			fuseCalls.Add(1)
			<-release
		}
		*st = unix.Statfs_t{Bsize: 4096, Frsize: 4096, Blocks: 10, Bfree: 5, Bavail: 5}
		return nil
	}
	for range 50 {
		var r protocol.DiskUsage
		mustCall(t, s.Handlers()[protocol.MethodGetDiskUsage], nil, &r)
		if len(r.Filesystems) != 1 || r.Filesystems[0].MountPoint != "/" {
			t.Fatalf("filesystems %+v, want / only", r.Filesystems)
		}
	}
	if n, f := nfsCalls.Load(), fuseCalls.Load(); n != 1 || f != 0 {
		t.Fatalf("statfs calls: nfs %d (want 1: later requests wait for it), fuse %d (want 0)", n, f)
	}
	close(release)
	// Once the hung call returns, the mount is asked again.
	for range 100 {
		if _, busy := s.statfsBusy.Load("/mnt/nfs"); !busy {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.statfsTimeout = time.Minute
	var r protocol.DiskUsage
	mustCall(t, s.Handlers()[protocol.MethodGetDiskUsage], nil, &r)
	if len(r.Filesystems) != 2 {
		t.Fatalf("after recovery: %+v, want / and /mnt/nfs", r.Filesystems)
	}
}

// A file operation stuck in the kernel gives its slot back after the
// deadline (-32003), and the number of stuck ones is bounded.
func TestFileDeadline(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	s.fileTimeout = 10 * time.Millisecond
	release := make(chan struct{})
	s.beforeRename = func(string) error { <-release; return nil }
	for i := range maxStuckFileOps {
		_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{"path": filepath.Join(ft.allowed, fmt.Sprint("f", i)), "content": "x"})
		wantError(t, perr, protocol.CodeTimeout, "did not finish")
	}
	_, perr := call(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": filepath.Join(ft.allowed, "hello.txt")})
	wantError(t, perr, protocol.CodeCommandFailed, "still blocked")
	close(release)
	for range 200 {
		if s.stuckFileOps.Load() == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.fileTimeout = time.Minute
	mustCall(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": filepath.Join(ft.allowed, "hello.txt")}, nil)
}

// Duplicate members: "content" twice (the first won here, the last in
// encoding/json) and invalid UTF-8 in utf8 content (silently U+FFFD) are
// refused with -32602 before anything is written.
func TestAttackStrictWriteParams(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	p := filepath.Join(ft.allowed, "strict")
	tests := []struct {
		name, params, part string
	}{
		{"content twice", `{"path":"` + p + `","content":"a","content":"b"}`, `"content" given twice`},
		{"content twice, second empty", `{"path":"` + p + `","content":"a","content":""}`, `"content" given twice`},
		{"escaped duplicate name", `{"path":"` + p + `","content":"a","\u0063ontent":"b"}`, `"content" given twice`},
		{"path twice", `{"path":"` + p + `","path":"/etc/x","content":"a"}`, `"path" given twice`},
		{"invalid UTF-8", `{"path":"` + p + "\",\"content\":\"a\xffb\"}", "not valid UTF-8"},
		{"invalid UTF-8 with escapes", `{"path":"` + p + "\",\"content\":\"a\\n\xfe\"}", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], tt.params)
			wantError(t, perr, protocol.CodeInvalidParams, tt.part)
			if _, err := os.Lstat(p); err == nil {
				t.Fatal("a refused write created the file")
			}
		})
	}
}
