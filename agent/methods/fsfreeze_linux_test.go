package methods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// fakeFS plays the kernel's part for FIFREEZE/FITHAW/FITRIM: a freeze
// count per mount point, injected errors, and the call log.
type fakeFS struct {
	mu       sync.Mutex
	frozen   map[string]int
	freezeEr map[string]error
	trimEr   map[string]error
	calls    []string
}

func newFakeFS() *fakeFS {
	return &fakeFS{frozen: map[string]int{}, freezeEr: map[string]error{}, trimEr: map[string]error{}}
}

func (f *fakeFS) ioctl(path string, req uint, arg *fstrimRange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch req {
	case ioctlFIFREEZE:
		f.calls = append(f.calls, "freeze "+path)
		if err := f.freezeEr[path]; err != nil {
			return err
		}
		if f.frozen[path] > 0 {
			return unix.EBUSY
		}
		f.frozen[path]++
	case ioctlFITHAW:
		f.calls = append(f.calls, "thaw "+path)
		if f.frozen[path] == 0 {
			return unix.EINVAL
		}
		f.frozen[path]--
	case ioctlFITRIM:
		f.calls = append(f.calls, fmt.Sprintf("trim %s %d", path, arg.Minlen))
		if err := f.trimEr[path]; err != nil {
			return err
		}
		arg.Len = 4096 * uint64(len(path))
	default:
		return unix.ENOTTY
	}
	return nil
}

func (f *fakeFS) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

// A machine with nested mounts, pseudo, network, fuse, read-only, bind
// and btrfs mounts.
const fakeMountinfo = `1 0 0:1 / / rw - rootfs rootfs rw
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 0:22 / /sys rw - sysfs sysfs rw
25 22 0:5 / /dev rw - devtmpfs udev rw
26 22 0:23 / /run rw - tmpfs tmpfs rw
27 22 254:2 / /var rw,relatime shared:2 - xfs /dev/vda2 rw
28 27 254:3 / /var/lib/db rw,relatime - ext4 /dev/mapper/vg-db rw
29 22 254:4 / /home rw - ext4 /dev/vdb1 rw
30 22 0:40 / /mnt/nfs rw - nfs4 server:/export rw
31 22 0:41 / /mnt/sshfs rw - fuse.sshfs me@host: rw
32 22 11:0 / /media/cdrom ro - iso9660 /dev/sr0 ro
33 22 254:5 / /srv/ro ro,relatime - ext4 /dev/vdc ro
34 29 254:4 /alice /srv/alice rw - ext4 /dev/vdb1 rw
35 22 0:45 / /data rw - btrfs /dev/vdd rw
36 22 254:6 / /mnt/sp\040ace rw - ext4 /dev/vde rw
`

func newFreezeService(t *testing.T, mountinfo string, edit func(*Service)) (*Service, *fakeFS) {
	t.Helper()
	s := New(seedConfig(t), Options{HostRoot: fakeHost(t, map[string]string{"proc/self/mountinfo": mountinfo}), Power: &fakePower{t: t}})
	ffs := newFakeFS()
	s.guest.fsIoctl = ffs.ioctl
	s.guest.hookDir = filepath.Join(t.TempDir(), "none")
	if edit != nil {
		edit(s)
	}
	t.Cleanup(func() { _, _ = s.FsfreezeThaw(context.Background()) })
	return s, ffs
}

func TestFreezeOrderAndSelection(t *testing.T) {
	all := []string{"/var/lib/db", "/mnt/sp ace", "/data", "/home", "/var", "/"}
	tests := []struct {
		name        string
		mountpoints []string
		errs        map[string]error
		want        []string
	}{
		{"all: deepest first, only local writable block file systems", nil, nil, all},
		{"list: others ignored, unknown ignored", []string{"/var", "/nonexistent", "/proc", "/mnt/nfs", "/home/"}, nil, []string{"/home", "/var"}},
		{"empty list freezes nothing", []string{}, nil, []string{}},
		{"EOPNOTSUPP and EBUSY skipped, not counted", nil, map[string]error{"/data": unix.EOPNOTSUPP, "/home": unix.EBUSY},
			[]string{"/var/lib/db", "/mnt/sp ace", "/var", "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ffs := newFreezeService(t, fakeMountinfo, nil)
			for k, v := range tt.errs {
				ffs.freezeEr[k] = v
			}
			res, err := s.FsfreezeFreeze(context.Background(), tt.mountpoints)
			if err != nil {
				t.Fatal(err)
			}
			if res.Frozen != len(tt.want) || !reflect.DeepEqual(res.Mountpoints, tt.want) {
				t.Errorf("froze %d %q, want %q", res.Frozen, res.Mountpoints, tt.want)
			}
			st := s.FsfreezeStatus()
			wantStatus := protocol.FsfreezeFrozen
			if len(tt.want) == 0 {
				wantStatus = protocol.FsfreezeThawed
			}
			if st.Status != wantStatus {
				t.Errorf("status %q, want %q", st.Status, wantStatus)
			}
			ffs.log()
			n, err := s.FsfreezeThaw(context.Background())
			if err != nil || n != len(tt.want) {
				t.Errorf("thaw = %d, %v; want %d", n, err, len(tt.want))
			}
			for p, c := range ffs.frozen {
				if c != 0 {
					t.Errorf("%s still frozen after thaw", p)
				}
			}
			if st := s.FsfreezeStatus(); st.Status != protocol.FsfreezeThawed || len(st.Mountpoints) != 0 {
				t.Errorf("status after thaw %+v", st)
			}
		})
	}
}

func TestFreezeFailureThawsEverything(t *testing.T) {
	s, ffs := newFreezeService(t, fakeMountinfo, nil)
	ffs.freezeEr["/home"] = unix.EIO
	_, err := s.FsfreezeFreeze(context.Background(), nil)
	if err == nil || err.Error() != "failed to freeze /home: Input/output error" {
		t.Fatalf("err = %v", err)
	}
	for p, c := range ffs.frozen {
		if c != 0 {
			t.Errorf("%s left frozen after a failed freeze", p)
		}
	}
	if s.Frozen() {
		t.Error("state frozen after a failed freeze")
	}
	ffs.freezeEr["/home"] = &os.PathError{Op: "open", Path: "/home", Err: unix.EACCES}
	if _, err := s.FsfreezeFreeze(context.Background(), nil); err == nil || err.Error() != "failed to open /home: Permission denied" {
		t.Fatalf("open failure: err = %v", err)
	}
}

func TestFreezeTwiceAndThawAlways(t *testing.T) {
	s, ffs := newFreezeService(t, fakeMountinfo, nil)
	if n, err := s.FsfreezeThaw(context.Background()); n != 0 || err != nil {
		t.Errorf("thaw when thawed = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.FsfreezeFreeze(context.Background(), []string{"/var"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FsfreezeFreeze(context.Background(), nil); !errors.Is(err, ErrFrozen) {
		t.Errorf("second freeze: err = %v, want ErrFrozen", err)
	}
	// Another program froze /home twice (nested): thaw undoes it all and
	// counts it once, as qemu-ga does.
	ffs.frozen["/home"] = 2
	if n, _ := s.FsfreezeThaw(context.Background()); n != 2 {
		t.Errorf("thaw = %d, want 2 (/var and /home)", n)
	}
	if ffs.frozen["/home"] != 0 {
		t.Errorf("/home freeze count %d after thaw", ffs.frozen["/home"])
	}
	// The agent restarted while frozen: its state says thawed, the
	// kernel's does not; thaw still finds them.
	ffs.frozen["/var"] = 1
	if n, _ := s.FsfreezeThaw(context.Background()); n != 1 {
		t.Errorf("thaw after restart = %d, want 1", n)
	}
}

func TestFreezeThawOrder(t *testing.T) {
	s, ffs := newFreezeService(t, fakeMountinfo, nil)
	if _, err := s.FsfreezeFreeze(context.Background(), []string{"/", "/var", "/var/lib/db"}); err != nil {
		t.Fatal(err)
	}
	got := ffs.log()
	want := []string{"freeze /var/lib/db", "freeze /var", "freeze /"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("freeze calls %q, want %q", got, want)
	}
	if _, err := s.FsfreezeThaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = ffs.log()
	// Ours in reverse (each until EINVAL), then the other candidates.
	if len(got) < 6 || !reflect.DeepEqual(got[:6], []string{"thaw /", "thaw /", "thaw /var", "thaw /var", "thaw /var/lib/db", "thaw /var/lib/db"}) {
		t.Errorf("thaw calls %q", got)
	}
}

func TestAutoThaw(t *testing.T) {
	thawed := make(chan int, 1)
	s, ffs := newFreezeService(t, fakeMountinfo, func(s *Service) {
		s.guest.freezeBound = 50 * time.Millisecond
		s.guest.onAutoThaw = func(n int) { thawed <- n }
	})
	res, err := s.FsfreezeFreeze(context.Background(), []string{"/var", "/home"})
	if err != nil || res.Frozen != 2 {
		t.Fatalf("freeze = %+v, %v", res, err)
	}
	select {
	case n := <-thawed:
		if n != 2 {
			t.Errorf("auto-thaw thawed %d, want 2", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no automatic thaw")
	}
	if s.Frozen() || ffs.frozen["/var"] != 0 || ffs.frozen["/home"] != 0 {
		t.Error("still frozen after the automatic thaw")
	}
	// A thaw in time stops the timer: no second thaw later.
	s.guest.freezeBound = time.Hour
	if _, err := s.FsfreezeFreeze(context.Background(), []string{"/var"}); err != nil {
		t.Fatal(err)
	}
	st := s.FsfreezeStatus()
	if st.AutoThawSeconds <= 0 || st.AutoThawSeconds > 3600 {
		t.Errorf("auto_thaw_seconds = %v", st.AutoThawSeconds)
	}
	if _, err := s.FsfreezeThaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.guest.freeze.timer != nil {
		t.Error("timer left running after thaw")
	}
}

func TestFreezeDefaultBoundFromConfig(t *testing.T) {
	s, _ := newFreezeService(t, fakeMountinfo, func(s *Service) { s.cfg.FsfreezeTimeoutSeconds = 42 })
	res, err := s.FsfreezeFreeze(context.Background(), []string{"/var"})
	if err != nil || res.AutoThawSeconds != 42 {
		t.Errorf("freeze = %+v, %v; want auto_thaw_seconds 42", res, err)
	}
}

// writeHook writes an executable hook that appends "<name> <arg>" to log.
func writeHook(t *testing.T, dir, name, log string, exit int, mode os.FileMode) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\necho \"%s $1\" >> %s\nexit %d\n", name, log, exit)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestFreezeHooks(t *testing.T) {
	testenv.NeedRoot(t)
	setup := func(t *testing.T, fail string) (*Service, *fakeFS, string) {
		dir := filepath.Join(t.TempDir(), "fsfreeze-hook.d")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(t.TempDir(), "hooks.log")
		for _, name := range []string{"10-db", "20-app", "30-late"} {
			exit := 0
			if name == fail {
				exit = 3
			}
			writeHook(t, dir, name, log, exit, 0o755)
		}
		writeHook(t, dir, "15-old.dpkg-old", log, 0, 0o755)                            // package leftover
		writeHook(t, dir, "16-noexec", log, 0, 0o644)                                  // not executable
		writeHook(t, dir, "17-worldwritable", log, 0, 0o757)                           // unsafe
		if err := os.Symlink("/bin/true", filepath.Join(dir, "18-link")); err != nil { // root-owned target: runs
			t.Fatal(err)
		}
		s, ffs := newFreezeService(t, fakeMountinfo, func(s *Service) { s.guest.hookDir = dir })
		return s, ffs, log
	}
	readLog := func(t *testing.T, log string) []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
	}
	t.Run("freeze then thaw in reverse", func(t *testing.T) {
		s, _, log := setup(t, "")
		if _, err := s.FsfreezeFreeze(context.Background(), []string{"/var"}); err != nil {
			t.Fatal(err)
		}
		if got, want := readLog(t, log), []string{"10-db_freeze", "20-app_freeze", "30-late_freeze"}; !reflect.DeepEqual(got, want) {
			t.Errorf("after freeze: %q, want %q", got, want)
		}
		if _, err := s.FsfreezeThaw(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []string{"10-db_freeze", "20-app_freeze", "30-late_freeze", "30-late_thaw", "20-app_thaw", "10-db_thaw"}
		if got := readLog(t, log); !reflect.DeepEqual(got, want) {
			t.Errorf("after thaw: %q, want %q", got, want)
		}
	})
	t.Run("a failing freeze hook aborts", func(t *testing.T) {
		s, ffs, log := setup(t, "20-app")
		_, err := s.FsfreezeFreeze(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), "20-app freeze failed") {
			t.Fatalf("err = %v", err)
		}
		want := []string{"10-db_freeze", "20-app_freeze", "20-app_thaw", "10-db_thaw"}
		if got := readLog(t, log); !reflect.DeepEqual(got, want) {
			t.Errorf("hooks %q, want %q", got, want)
		}
		if calls := ffs.log(); len(calls) != 0 || s.Frozen() {
			t.Errorf("file systems touched after a failed hook: %q", calls)
		}
	})
	t.Run("unsafe directory: no hook runs", func(t *testing.T) {
		s, _, log := setup(t, "")
		if err := os.Chmod(s.guest.hookDir, 0o777); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FsfreezeFreeze(context.Background(), []string{"/var"}); err != nil {
			t.Fatal(err)
		}
		if got := readLog(t, log); len(got) != 0 {
			t.Errorf("hooks ran from a world-writable directory: %q", got)
		}
	})
	t.Run("hook bound", func(t *testing.T) {
		s, _, _ := setup(t, "")
		if err := os.WriteFile(filepath.Join(s.guest.hookDir, "05-hang"), []byte("#!/bin/sh\nsleep 600\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		s.guest.hookTimeout = 200 * time.Millisecond
		_, err := s.FsfreezeFreeze(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), "05-hang freeze failed: timed out: no exit within 200ms") {
			t.Fatalf("err = %v", err)
		}
	})
}

// realFS mounts a fresh ext4 image on a loop device under a temporary
// directory and returns the mount point; it skips loudly when it cannot.
func realFS(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "cannot loop-mount an ext4 image here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Never leave it frozen: thaw until the kernel says it is not.
		for range maxThawRounds {
			if defaultFsIoctl(mnt, ioctlFITHAW, nil) != nil {
				break
			}
		}
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// onlyUnder lets the real ioctl reach mount points below dir and answers
// EINVAL ("not frozen") for every other: a test can never freeze or thaw
// this machine's own file systems.
func onlyUnder(dir string) func(string, uint, *fstrimRange) error {
	return func(path string, req uint, arg *fstrimRange) error {
		if !strings.HasPrefix(path, dir+"/") && path != dir {
			if req == ioctlFIFREEZE || req == ioctlFITRIM {
				return unix.EOPNOTSUPP
			}
			return unix.EINVAL
		}
		return defaultFsIoctl(path, req, arg)
	}
}

func TestFreezeRealExt4(t *testing.T) {
	mnt := realFS(t)
	s := newService(t, nil)
	s.guest.fsIoctl = onlyUnder(mnt)
	s.guest.hookDir = filepath.Join(t.TempDir(), "none")
	s.guest.stateFile = filepath.Join(t.TempDir(), "fsfreeze.json")
	if err := os.WriteFile(filepath.Join(mnt, "before"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := s.FsfreezeFreeze(context.Background(), []string{mnt})
	if err != nil {
		t.Fatal(err)
	}
	if res.Frozen != 1 || res.Mountpoints[0] != mnt {
		t.Fatalf("freeze = %+v, want %s frozen", res, mnt)
	}
	// The kernel says it is frozen: a second FIFREEZE is EBUSY.
	if err := defaultFsIoctl(mnt, ioctlFIFREEZE, nil); !errors.Is(err, unix.EBUSY) {
		t.Errorf("FIFREEZE on the frozen file system: %v, want EBUSY", err)
	}
	n, err := s.FsfreezeThaw(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("thaw = %d, %v; want 1", n, err)
	}
	if err := defaultFsIoctl(mnt, ioctlFITHAW, nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("FITHAW after thaw: %v, want EINVAL (not frozen)", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("y"), 0o644); err != nil {
		t.Errorf("write after thaw: %v", err)
	}
}

func TestFreezeRealAutoThaw(t *testing.T) {
	mnt := realFS(t)
	thawed := make(chan int, 1)
	s := newService(t, nil)
	s.guest.fsIoctl = onlyUnder(mnt)
	s.guest.hookDir = filepath.Join(t.TempDir(), "none")
	s.guest.stateFile = filepath.Join(t.TempDir(), "fsfreeze.json")
	s.guest.freezeBound = 100 * time.Millisecond
	s.guest.onAutoThaw = func(n int) { thawed <- n }
	if _, err := s.FsfreezeFreeze(context.Background(), []string{mnt}); err != nil {
		t.Fatal(err)
	}
	// A writer blocks on the frozen file system until the automatic thaw.
	wrote := make(chan error, 1)
	go func() { wrote <- os.WriteFile(filepath.Join(mnt, "blocked"), []byte("z"), 0o644) }()
	select {
	case n := <-thawed:
		if n != 1 {
			t.Errorf("auto-thaw thawed %d", n)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no automatic thaw")
	}
	if err := <-wrote; err != nil {
		t.Errorf("write after the automatic thaw: %v", err)
	}
}

func TestFreezeRecordAndRecovery(t *testing.T) {
	s, ffs := newFreezeService(t, fakeMountinfo, nil)
	rec := s.freezeStatePath()
	if !strings.HasPrefix(rec, s.hostRoot) {
		t.Fatalf("record %s outside the host root", rec)
	}
	if _, err := s.FsfreezeFreeze(context.Background(), []string{"/var", "/home"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rec)
	if err != nil || !strings.Contains(string(b), `"mountpoints":["/home","/var"]`) {
		t.Fatalf("record %q, %v", b, err)
	}
	// A new agent (same host root) starts frozen with the old deadline.
	s2 := New(seedConfig(t), Options{HostRoot: s.hostRoot, Power: &fakePower{t: t}})
	s2.guest.fsIoctl = ffs.ioctl
	s2.guest.hookDir = s.guest.hookDir
	st := s2.FsfreezeStatus()
	if st.Status != "frozen" || strings.Join(st.Mountpoints, " ") != "/home /var" || st.AutoThawSeconds <= 0 || st.AutoThawSeconds > 60 {
		t.Errorf("restarted agent status %+v", st)
	}
	if _, err := s2.FsfreezeFreeze(context.Background(), nil); !errors.Is(err, ErrFrozen) {
		t.Errorf("freeze after restart: %v, want ErrFrozen", err)
	}
	if n, _ := s2.FsfreezeThaw(context.Background()); n != 2 {
		t.Errorf("thaw after restart = %d, want 2", n)
	}
	if _, err := os.Stat(rec); !os.IsNotExist(err) {
		t.Errorf("record left after thaw: %v", err)
	}
	_, _ = s.FsfreezeThaw(context.Background()) // the first agent's timer

	// A record whose deadline passed is thawed at once by the new agent.
	root := fakeHost(t, map[string]string{
		"proc/self/mountinfo":                "21 1 0:21 / /run rw - tmpfs tmpfs rw\n",
		"run/kvmmanager-agent/fsfreeze.json": `{"mountpoints":["/nonexistent-kvm-test"],"deadline_unix_ns":1}`,
	})
	s3 := New(seedConfig(t), Options{HostRoot: root, Power: &fakePower{t: t}})
	for i := 0; s3.Frozen(); i++ {
		if i > 3000 {
			t.Fatal("a record past its deadline was not thawed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, "run/kvmmanager-agent/fsfreeze.json")); !os.IsNotExist(err) {
		t.Errorf("record left after the automatic thaw: %v", err)
	}
}
