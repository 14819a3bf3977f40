package methods

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// ioctl requests of <linux/fs.h> (the same numbers on every Linux
// architecture the agent is built for).
const (
	ioctlFIFREEZE = 0xC0045877 // _IOWR('X', 119, int)
	ioctlFITHAW   = 0xC0045878 // _IOWR('X', 120, int)
	ioctlFITRIM   = 0xC0185879 // _IOWR('X', 121, struct fstrim_range)
)

// maxThawRounds bounds the FITHAW calls on one file system: each undoes
// one FIFREEZE, and qemu-ga repeats them until the kernel says "not frozen"
// so that nested freezes are undone too.
const maxThawRounds = 64

// defaultFsIoctl opens the mount point and issues the ioctl. An open
// failure is an *fs.PathError; an ioctl failure is the bare errno.
func defaultFsIoctl(path string, req uint, arg *fstrimRange) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var p uintptr
	if arg != nil {
		p = uintptr(unsafe.Pointer(arg))
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), p)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// freezeBound is how long file systems may stay frozen before the agent
// thaws them by itself.
func (s *Service) freezeBound() time.Duration {
	if s.guest.freezeBound > 0 {
		return s.guest.freezeBound
	}
	return time.Duration(s.cfg.FsfreezeTimeoutSeconds) * time.Second
}

// Frozen reports whether the agent holds file systems frozen. Operations
// that would write to them refuse (ErrFrozen) while it is true.
func (s *Service) Frozen() bool {
	s.guest.freeze.mu.Lock()
	defer s.guest.freeze.mu.Unlock()
	return s.guest.freeze.frozen
}

// FsfreezeStatus reports the freeze state the agent holds. File systems
// frozen by another program are not seen (as with qemu-ga).
func (s *Service) FsfreezeStatus() protocol.FsfreezeStatus {
	f := &s.guest.freeze
	f.mu.Lock()
	defer f.mu.Unlock()
	st := protocol.FsfreezeStatus{Status: protocol.FsfreezeThawed, Mountpoints: []string{}}
	if f.frozen {
		st.Status = protocol.FsfreezeFrozen
		st.Mountpoints = slices.Clone(f.mounts)
		st.AutoThawSeconds = max(0, time.Until(f.deadline).Seconds())
	}
	return st
}

// FsfreezeFreeze syncs and freezes (FIFREEZE) the local, writable,
// block-device backed file systems, deepest mount point first, or only those
// of mountpoints when it is not nil (others are ignored, as qemu-ga does).
// The hooks of fsfreeze-hook.d run with "freeze" first; a hook failure
// aborts. File systems that do not support freezing (EOPNOTSUPP) or are
// already frozen by someone else (EBUSY) are skipped and not counted. Any
// other failure thaws what was frozen and returns the error. After
// fsfreeze_timeout_seconds the agent thaws by itself.
func (s *Service) FsfreezeFreeze(ctx context.Context, mountpoints []string) (protocol.FsfreezeFreezeResult, error) {
	f := &s.guest.freeze
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		return protocol.FsfreezeFreezeResult{}, opErr(ErrFrozen, "file systems are already frozen (%d); thaw them first", len(f.mounts))
	}
	all, err := s.readMounts()
	if err != nil {
		return protocol.FsfreezeFreezeResult{}, wrapErr(nil, err, "failed to list mounted file systems")
	}
	cands := blockMounts(all, true)
	if mountpoints != nil {
		want := map[string]bool{}
		for _, m := range mountpoints {
			want[filepath.Clean(m)] = true
		}
		cands = slices.DeleteFunc(cands, func(m mount) bool { return !want[m.mountPoint] })
	}
	freezeOrder(cands)

	ran, err := s.runFreezeHooks(ctx, "freeze")
	if err != nil {
		slices.Reverse(ran)
		s.runHookList(context.WithoutCancel(ctx), ran, "thaw")
		return protocol.FsfreezeFreezeResult{}, err
	}

	bound := s.freezeBound()
	deadline := time.Now().Add(bound)
	if len(cands) > 0 {
		var names []string
		for _, m := range cands {
			names = append(names, m.mountPoint)
		}
		if err := s.saveFreezeState(names, deadline); err != nil {
			s.log.Warn("cannot record the freeze; a restarted agent would not know of it", "err", err)
		}
	}
	// The last line logged before anything is frozen (as qemu-ga's
	// "guest-fsfreeze called"): an admin reading the journal sees when a
	// freeze began; nothing is logged again until the thaw.
	s.log.Info("freezing file systems", "count", len(cands), "auto_thaw_seconds", int(bound/time.Second))
	var frozen []string
	for _, m := range cands {
		err := s.guest.fsIoctl(m.mountPoint, ioctlFIFREEZE, nil)
		if err == nil {
			frozen = append(frozen, m.mountPoint)
			continue
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBUSY) {
			continue
		}
		// Thaw before anything is logged: a log file may live on one of them.
		s.thawList(slices.Clone(frozen))
		s.clearFreezeState()
		s.runHooks(context.WithoutCancel(ctx), "thaw")
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = wrapErr(nil, pe.Err, "failed to open %s", m.mountPoint)
		} else {
			err = wrapErr(nil, err, "failed to freeze %s", m.mountPoint)
		}
		s.log.Warn("fsfreeze failed; thawed again", "err", err)
		return protocol.FsfreezeFreezeResult{}, err
	}
	res := protocol.FsfreezeFreezeResult{Frozen: len(frozen), Mountpoints: frozen, AutoThawSeconds: int(bound / time.Second)}
	if len(frozen) == 0 {
		// Nothing frozen: the state stays thawed (as qemu-ga's), and the
		// hooks are told to resume.
		res.Mountpoints = []string{}
		s.clearFreezeState()
		s.runHooks(context.WithoutCancel(ctx), "thaw")
		return res, nil
	}
	f.frozen = true
	f.mounts = frozen
	f.gen++
	gen := f.gen
	f.deadline = deadline
	f.timer = time.AfterFunc(time.Until(deadline), func() { s.autoThaw(gen) })
	return res, nil
}

// FsfreezeThaw thaws (FITHAW, repeated until the kernel says "not frozen")
// the file systems the agent froze, in reverse order, then every other
// block-device file system, shallowest first, then runs the hooks with "thaw". It returns the number
// of file systems that were frozen. Thawing what is not frozen is no error
// (0), so a host can always call it, e.g. after the agent restarted.
func (s *Service) FsfreezeThaw(ctx context.Context) (int, error) {
	f := &s.guest.freeze
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.thawLocked(ctx), nil
}

// thawLocked thaws with f.mu held; nothing is logged before the thaw.
func (s *Service) thawLocked(ctx context.Context) int {
	f := &s.guest.freeze
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	// The agent's own list first (reversed), then every other block-device
	// file system (frozen e.g. before a restart of the agent; FITHAW on one
	// that is not frozen is a harmless EINVAL).
	list := slices.Clone(f.mounts)
	slices.Reverse(list)
	if all, err := s.readMounts(); err == nil {
		cands := blockMounts(all, false)
		freezeOrder(cands)
		for _, m := range slices.Backward(cands) {
			if !slices.Contains(list, m.mountPoint) {
				list = append(list, m.mountPoint)
			}
		}
	}
	n := s.thawList(list)
	s.clearFreezeState()
	wasFrozen := f.frozen
	f.frozen = false
	f.mounts = nil
	f.gen++
	s.runHooks(context.WithoutCancel(ctx), "thaw")
	if wasFrozen || n > 0 {
		s.log.Info("file systems thawed", "count", n)
	}
	return n
}

// thawList issues FITHAW on each mount point until it fails, and returns
// how many were thawed at least once.
func (s *Service) thawList(list []string) int {
	n := 0
	for _, mp := range list {
		thawed := false
		for range maxThawRounds {
			if s.guest.fsIoctl(mp, ioctlFITHAW, nil) != nil {
				break
			}
			thawed = true
		}
		if thawed {
			n++
		}
	}
	return n
}

// autoThaw runs when a freeze outlived its bound: the host that froze is
// gone or stuck, and a frozen guest cannot write anything.
func (s *Service) autoThaw(gen uint64) {
	f := &s.guest.freeze
	f.mu.Lock()
	if !f.frozen || f.gen != gen {
		f.mu.Unlock()
		return
	}
	n := s.thawLocked(context.Background())
	hook := s.guest.onAutoThaw
	f.mu.Unlock()
	s.log.Warn("file systems thawed automatically: no thaw within fsfreeze_timeout_seconds",
		"count", n, "bound", s.freezeBound().String())
	if hook != nil {
		hook(n)
	}
}
