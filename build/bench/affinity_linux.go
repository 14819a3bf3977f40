package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Placement says on which CPUs the client and the agents run.
type Placement string

const (
	// PlaceSplit runs the client on one CPU and both agents on another: host
	// and guest on different CPUs. On a virtual machine every request then
	// pays a cross-vCPU wake-up (tens of µs) that dwarfs both agents.
	PlaceSplit Placement = "split"
	// PlaceSame runs the client and both agents on one CPU (the default): no
	// cross-CPU wake-ups, so the figures are the software path of client,
	// kernel and agent, and repeat from run to run.
	PlaceSame Placement = "same"
	// PlaceFree leaves placement to the scheduler; on a virtual machine
	// whether the other vCPU happens to be idle (halted) then changes
	// wake-up latencies several-fold from run to run.
	PlaceFree Placement = "free"
)

// cpus returns the CPU of the client and of the agents, or -1, -1 for free
// placement: the first (and second) of the CPUs this process may use.
func (p Placement) cpus() (client, agents int, err error) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return 0, 0, fmt.Errorf("read the CPUs this process may use: %w", err)
	}
	var usable []int
	for i := range len(allowed) * 64 {
		if allowed.IsSet(i) {
			usable = append(usable, i)
		}
	}
	if len(usable) == 0 {
		return 0, 0, fmt.Errorf("no usable CPU in the affinity mask")
	}
	switch p {
	case PlaceFree:
		return -1, -1, nil
	case PlaceSame, "":
		return usable[0], usable[0], nil
	case PlaceSplit:
		if len(usable) < 2 {
			return usable[0], usable[0], nil
		}
		return usable[0], usable[1], nil
	}
	return 0, 0, fmt.Errorf("unknown placement %q (want split, same or free)", p)
}

// pinProcess binds every thread of process pid to cpu; threads it creates
// later inherit the binding.
func pinProcess(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := setProcessAffinity(pid, &set); err != nil {
		return fmt.Errorf("bind process %d to CPU %d: %w", pid, cpu, err)
	}
	return nil
}

func setProcessAffinity(pid int, set *unix.CPUSet) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list threads in %s: %w", dir, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}

// pinThread binds the calling OS thread to cpu; the caller holds it with
// runtime.LockOSThread.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("bind the client to CPU %d: %w", cpu, err)
	}
	return nil
}

// unpinThread lets the calling thread run on every CPU again.
func unpinThread() {
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	_ = unix.SchedSetaffinity(0, &set)
}

func placeName(p Placement) string {
	if p == "" {
		return string(PlaceSame)
	}
	return string(p)
}
