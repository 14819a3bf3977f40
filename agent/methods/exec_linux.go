package methods

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Every command runs in a cgroup v2 of its own, created below the agent's own
// cgroup (under systemd: kvmmanager-agent.service's) and entered at fork
// (CLONE_INTO_CGROUP), so nothing it starts, setsid or double fork included,
// can leave it; the cgroup is killed whole (cgroup.kill, or freeze + SIGKILL
// on kernels before 5.14) on timeout and after the command exits, then
// removed. Without a writable cgroup2 (no cgroup2 mounted, a read-only
// mount, an old kernel) the agent is a child subreaper
// (PR_SET_CHILD_SUBREAPER): processes orphaned by a command are reparented
// to the agent instead of init, and killed when the command ends.

// noCgroups forces the subreaper fallback (tests).
var noCgroups atomic.Bool

// cgroupState is the cgroup below which commands get theirs, found once.
var cgroupState struct {
	once sync.Once
	dir  string // "" when cgroups are unusable
	err  error
	seq  atomic.Uint64
}

// cgroupBase returns the agent's own cgroup v2 directory if the agent can
// create child cgroups there.
func cgroupBase() (string, error) {
	cgroupState.once.Do(func() {
		cgroupState.dir, cgroupState.err = findCgroupBase()
	})
	return cgroupState.dir, cgroupState.err
}

func findCgroupBase() (string, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	rel := ""
	found := false
	for _, line := range strings.Split(string(own), "\n") {
		if r, ok := strings.CutPrefix(line, "0::"); ok {
			rel, found = r, true
		}
	}
	if !found {
		return "", errors.New("the agent is in no cgroup v2 hierarchy")
	}
	info, err := readFileInto("/proc/self/mountinfo", nil)
	if err != nil {
		return "", err
	}
	mounts, err := parseMountinfo(info)
	if err != nil {
		return "", err
	}
	mount := ""
	for _, m := range mounts {
		if m.fsType == "cgroup2" {
			mount = m.mountPoint
			break
		}
	}
	if mount == "" {
		return "", errors.New("no cgroup2 file system mounted")
	}
	dir := filepath.Join(mount, filepath.Clean("/"+rel))
	probe := filepath.Join(dir, fmt.Sprintf("kvmmanager-exec-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return "", fmt.Errorf("create a cgroup below %s: %w", dir, err)
	}
	if err := os.Remove(probe); err != nil {
		return "", fmt.Errorf("remove cgroup %s: %w", probe, err)
	}
	return dir, nil
}

// startContained starts cmd in a container of its own: a new process group,
// and a new cgroup or, without cgroups, the subreaper's bookkeeping.
func startContained(cmd *exec.Cmd, log *slog.Logger) (container, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !noCgroups.Load() {
		base, err := cgroupBase()
		if err == nil {
			c, err := startInCgroup(cmd, base, log)
			if err == nil || !errors.Is(err, errNoCgroup) {
				return c, err
			}
			log.Debug("exec_command: no cgroup for the command; using the subreaper", "err", err)
		} else {
			log.Debug("exec_command: cgroups unusable; using the subreaper", "err", err)
		}
	}
	return startReaped(cmd, log)
}

// errNoCgroup: the cgroup could not be used; the fallback may.
var errNoCgroup = errors.New("cgroup unusable")

type cgroupContainer struct {
	dir string
	log *slog.Logger
}

func startInCgroup(cmd *exec.Cmd, base string, log *slog.Logger) (container, error) {
	dir := filepath.Join(base, fmt.Sprintf("kvmmanager-exec-%d-%d", os.Getpid(), cgroupState.seq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoCgroup, err)
	}
	c := &cgroupContainer{dir: dir, log: log}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("%w: %v", errNoCgroup, err)
	}
	defer unix.Close(fd)
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	if err := cmd.Start(); err != nil {
		os.Remove(dir)
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) && isCloneIntoCgroupErr(err) {
			// clone3 or CLONE_INTO_CGROUP missing (kernel < 5.7).
			cmd.SysProcAttr.UseCgroupFD = false
			return nil, fmt.Errorf("%w: %v", errNoCgroup, err)
		}
		return nil, err
	}
	return c, nil
}

// isCloneIntoCgroupErr reports whether a start error came from the fork
// itself (an old kernel's clone3) rather than from exec.
func isCloneIntoCgroupErr(err error) bool {
	var pe *os.PathError
	return !errors.As(err, &pe) || pe.Op == "fork/exec"
}

// kill ends every process in the cgroup and waits until it is empty.
func (c *cgroupContainer) kill(bool) {
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		// Before Linux 5.14: freeze, kill each process, thaw.
		_ = os.WriteFile(filepath.Join(c.dir, "cgroup.freeze"), []byte("1"), 0)
		for range maxFreezeRounds {
			procs, _ := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
			pids := strings.Fields(string(procs))
			if len(pids) == 0 {
				break
			}
			for _, f := range pids {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			_ = os.WriteFile(filepath.Join(c.dir, "cgroup.freeze"), []byte("0"), 0)
			time.Sleep(time.Millisecond)
		}
	}
	// The kill is asynchronous: wait (bounded) until the cgroup is empty.
	for i := 0; i < 2000; i++ {
		ev, err := os.ReadFile(filepath.Join(c.dir, "cgroup.events"))
		if err != nil || bytes.Contains(ev, []byte("populated 0")) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	c.log.Warn("exec_command: cgroup still populated after the kill", "cgroup", c.dir)
}

func (c *cgroupContainer) release() {
	for i := 0; i < 100; i++ {
		err := os.Remove(c.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if i == 99 {
			c.log.Warn("exec_command: cannot remove the command's cgroup", "cgroup", c.dir, "err", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The subreaper fallback. The agent learns which processes are its commands
// (reaper.running), and tags each command's environment with its id, which
// its descendants inherit: when a command ends, the orphans reparented to
// the agent that carry its tag, or no tag that belongs to another running
// command, are killed with their descendants and reaped.

const execIDVar = "KVMMANAGER_EXEC_ID"

var reaper struct {
	once    sync.Once
	err     error
	mu      sync.Mutex     // held while starting a command and while killing orphans
	running map[int]string // pid of a running command -> its id
	seq     atomic.Uint64
}

type reapedContainer struct {
	pid int // the command, also its process group
	id  string
	log *slog.Logger
}

func startReaped(cmd *exec.Cmd, log *slog.Logger) (container, error) {
	reaper.once.Do(func() {
		reaper.running = map[int]string{}
		reaper.err = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	})
	if reaper.err != nil {
		log.Warn("exec_command: cannot become a child subreaper; processes a command orphans escape", "err", reaper.err)
	}
	id := fmt.Sprintf("%d-%d", os.Getpid(), reaper.seq.Add(1))
	cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], execIDVar+"="+id)
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	reaper.running[cmd.Process.Pid] = id
	return &reapedContainer{pid: cmd.Process.Pid, id: id, log: log}, nil
}

func (c *reapedContainer) kill(reaped bool) {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaped {
		_ = syscall.Kill(-c.pid, syscall.SIGKILL) // the group outlives its leader
	} else {
		_ = killTree(c.pid)
	}
	self := os.Getpid()
	var orphans []int
	for _, pid := range childrenOf(self) {
		if _, isCommand := reaper.running[pid]; isCommand {
			continue
		}
		tag := processTag(pid)
		if other := tagOwner(tag); other && tag != c.id {
			continue // orphaned by another command, which is still running
		}
		orphans = append(orphans, pid)
	}
	for _, pid := range orphans {
		_ = killTree(pid)
	}
	for _, pid := range orphans {
		reapChild(pid)
	}
}

func (c *reapedContainer) release() {
	reaper.mu.Lock()
	delete(reaper.running, c.pid)
	reaper.mu.Unlock()
}

// tagOwner reports whether tag is the id of a running command.
func tagOwner(tag string) bool {
	if tag == "" {
		return false
	}
	for _, id := range reaper.running {
		if id == tag {
			return true
		}
	}
	return false
}

// processTag returns the command id in pid's initial environment ("" if
// none or unreadable).
func processTag(pid int) string {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(execIDVar+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// reapChild collects the exit status of the killed child pid (the agent is
// its parent now), waiting at most a second.
func reapChild(pid int) {
	for range 1000 {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || (err != nil && err != unix.EINTR) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// childrenOf returns the pids whose parent is ppid.
func childrenOf(ppid int) []int {
	var out []int
	for pid, parent := range parentMap() {
		if parent == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// maxFreezeRounds bounds the search for descendants forked while the tree
// was being frozen.
const maxFreezeRounds = 16

// killTree kills the process group pgid (led by the command, pid pgid) and
// every descendant of its leader. The group is stopped first, then each
// descendant found in /proc, round after round, so that nothing forks a
// process the search would miss; then all of them get SIGKILL.
func killTree(pgid int) error {
	_ = syscall.Kill(-pgid, syscall.SIGSTOP)
	_ = syscall.Kill(pgid, syscall.SIGSTOP)
	stopped := map[int]bool{}
	for range maxFreezeRounds {
		found := false
		for _, pid := range descendants(pgid) {
			if !stopped[pid] {
				stopped[pid] = true
				found = true
				_ = syscall.Kill(pid, syscall.SIGSTOP)
			}
		}
		if !found {
			break
		}
	}
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	for pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return err
}

// parentMap returns every process's parent pid, from /proc/<pid>/stat.
func parentMap() map[int]int {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := dir.Readdirnames(-1)
	dir.Close()
	out := make(map[int]int, len(names))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if ppid, ok := parentPID(pid); ok {
			out[pid] = ppid
		}
	}
	return out
}

// descendants returns the pids of the processes below root.
func descendants(root int) []int {
	children := map[int][]int{}
	for pid, ppid := range parentMap() {
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// parentPID reads the parent pid from /proc/<pid>/stat: "pid (comm) state
// ppid ...", where comm may hold spaces and parentheses.
func parentPID(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}
