package methods

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// setProcessGroup puts the command in a process group of its own and makes
// cancellation (timeout, agent shutdown) kill that whole group with SIGKILL,
// so that children the command started die with it, and also every
// descendant that left the group (setsid, setpgid).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group id is the child's pid (Setpgid with Pgid 0).
		return killTree(cmd.Process.Pid)
	}
}

// maxFreezeRounds bounds the search for descendants forked while the tree
// was being frozen.
const maxFreezeRounds = 16

// killTree kills the process group pgid (led by the command, pid pgid) and
// every descendant of its leader. The group is stopped first, then each
// descendant found in /proc, round after round, so that nothing forks a
// process the search would miss; then all of them get SIGKILL. Descendants
// whose parent had already exited were adopted by init and are out of
// reach (a reaper of the agent's own would be needed).
func killTree(pgid int) error {
	_ = syscall.Kill(-pgid, syscall.SIGSTOP)
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
	for pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return err
}

// descendants returns the pids of the processes below root, from the parent
// pids in /proc/<pid>/stat.
func descendants(root int) []int {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := dir.Readdirnames(-1)
	dir.Close()
	children := map[int][]int{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if ppid, ok := parentPID(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
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
