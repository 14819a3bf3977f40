//go:build !windows

package methods

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Background processes: the one implementation behind protocol 1.1's
// exec_start, exec_status and exec_kill and the QEMU guest agent dialect's
// guest-exec and guest-exec-status. The program is resolved and checked by
// the same command policy as exec_command (whitelist, fixed system PATH),
// runs with exec_command's fixed environment in a container of its own
// (startContained: a cgroup, or the subreaper's bookkeeping) that is killed
// whole on timeout, on exec_kill and once the program exits, so nothing it
// started outlives it. Its output is kept in memory, max_output_bytes per
// stream: the first bytes (guest-exec, which returns all output at once) or
// a sliding window a host reads by offset while the program runs
// (exec_start).

// ProcessSpec describes a program to start.
type ProcessSpec struct {
	// Path is a bare command name (found in the system PATH) or an
	// absolute path.
	Path string
	Args []string
	// Env entries (NAME=value) are added to the fixed environment. They
	// are refused while the command whitelist is enabled: LD_PRELOAD and
	// the like would run other code than the whitelisted program.
	Env []string
	// Dir is the working directory ("" means /).
	Dir string
	// Stdin is written to the program's standard input, then closed; nil
	// means /dev/null.
	Stdin []byte
	// CaptureStdout and CaptureStderr keep the streams; MergeOutput sends
	// stderr into stdout's buffer. Streams not captured go to /dev/null.
	CaptureStdout, CaptureStderr, MergeOutput bool
	// Stream keeps the last max_output_bytes of each stream (read by
	// offset, ReadOutput) instead of the first.
	Stream bool
	// Timeout bounds the program's run; 0 means command_timeout_seconds.
	Timeout time.Duration
}

// Process is a started program.
type Process struct {
	PID     int
	Started time.Time
	Timeout time.Duration
	done    chan struct{}
	killReq chan struct{}
	kill    sync.Once
	stdout  *streamBuffer
	stderr  *streamBuffer

	// Set before done is closed.
	state    *syscall.WaitStatus
	timedOut bool
	killed   bool
	ended    time.Time
}

// ProcessStatus is a Process's state.
type ProcessStatus struct {
	Exited bool
	// ExitCode is set when the program exited normally, Signal when a
	// signal killed it (SIGKILL after the timeout or exec_kill).
	ExitCode, Signal *int
	// TimedOut reports a kill after the timeout, Killed one by Kill.
	TimedOut, Killed bool
	// Ended is when the program and its container were gone.
	Ended                            time.Time
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
	// StdoutCaptured and StderrCaptured say which streams were kept.
	StdoutCaptured, StderrCaptured bool
}

// StartProcess starts spec in the background.
func (s *Service) StartProcess(spec ProcessSpec) (*Process, error) {
	if spec.Path == "" {
		return nil, invalidParams(`"path" is empty`)
	}
	for i, a := range spec.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, invalidParams("arg[%d] contains a NUL byte", i)
		}
	}
	if len(spec.Env) > 0 && s.cfg.CommandWhitelistEnabled {
		return nil, protocol.Errorf(protocol.CodePermissionDenied,
			"env is refused while command_whitelist_enabled is true (it could change what a whitelisted program runs)")
	}
	for i, e := range spec.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return nil, invalidParams("env[%d] %q is not NAME=value", i, e)
		}
	}
	path, err := s.commands.Resolve(spec.Path)
	if err != nil {
		return nil, commandError(err)
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = time.Duration(s.cfg.CommandTimeoutSeconds) * time.Second
	}
	cmd := exec.Command(path, spec.Args...)
	cmd.Args[0] = spec.Path
	cmd.Env = append(append([]string{}, childEnv...), spec.Env...)
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.WaitDelay = pipeDrainDelay
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	p := &Process{Timeout: timeout, done: make(chan struct{}), killReq: make(chan struct{})}
	var pipes []*streamPipe
	newPipe := func() (*streamPipe, error) {
		sp, err := newStreamPipe(s.cfg.MaxOutputBytes, spec.Stream)
		if err == nil {
			pipes = append(pipes, sp)
		}
		return sp, err
	}
	closeAll := func() {
		for _, sp := range pipes {
			sp.close()
		}
	}
	if spec.CaptureStdout || spec.MergeOutput {
		sp, err := newPipe()
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", spec.Path, err)
		}
		p.stdout = sp.buf
		cmd.Stdout = sp.w
		if spec.MergeOutput {
			cmd.Stderr = sp.w
		}
	}
	if spec.CaptureStderr && !spec.MergeOutput {
		sp, err := newPipe()
		if err != nil {
			closeAll()
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", spec.Path, err)
		}
		p.stderr = sp.buf
		cmd.Stderr = sp.w
	}
	box, err := startContained(cmd, s.log)
	if err != nil {
		closeAll()
		return nil, startError(spec.Path, path, err)
	}
	p.Started = time.Now()
	p.PID = cmd.Process.Pid
	for _, sp := range pipes {
		sp.start()
	}
	s.log.Debug("background command started", "command", path, "args", len(spec.Args), "pid", p.PID, "timeout", timeout)
	go p.supervise(s, cmd, box, pipes)
	return p, nil
}

// supervise waits for the program, kills its container on timeout, on
// Kill and after its exit, and completes its output.
func (p *Process) supervise(s *Service, cmd *exec.Cmd, box container, pipes []*streamPipe) {
	defer box.release()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(p.Timeout)
	defer timer.Stop()
	var waitErr error
	select {
	case waitErr = <-waited:
	case <-timer.C:
		p.timedOut = true
	case <-p.killReq:
		p.killed = true
	}
	if p.timedOut || p.killed {
		box.kill(false)
		waitErr = <-waited
	}
	box.kill(true)
	drain := time.NewTimer(pipeDrainDelay)
	defer drain.Stop()
	for _, sp := range pipes {
		sp.wait(drain.C)
		sp.close()
	}
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		s.log.Debug("background command: stdin still open after exit; closed it", "pid", p.PID)
	}
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			p.state = &ws
		}
	}
	p.ended = time.Now()
	close(p.done)
}

// Done is closed when the program has exited and its output is complete.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status returns the program's state now; output only once it has exited.
func (p *Process) Status() ProcessStatus {
	select {
	case <-p.done:
	default:
		return ProcessStatus{}
	}
	st := ProcessStatus{Exited: true, TimedOut: p.timedOut, Killed: p.killed, Ended: p.ended}
	st.ExitCode, st.Signal = p.exit()
	if p.stdout != nil {
		st.StdoutCaptured = true
		st.Stdout, st.StdoutTruncated = p.stdout.all()
	}
	if p.stderr != nil {
		st.StderrCaptured = true
		st.Stderr, st.StderrTruncated = p.stderr.all()
	}
	return st
}

// exit returns the exit code or the killing signal; done must be closed.
func (p *Process) exit() (code, signal *int) {
	ws := p.state
	if ws == nil {
		return nil, nil
	}
	if ws.Signaled() {
		sig := int(ws.Signal())
		return nil, &sig
	}
	c := ws.ExitStatus()
	return &c, nil
}

// Kill kills the program's whole tree if it is still running; Done is
// closed soon after.
func (p *Process) Kill() error {
	p.kill.Do(func() { close(p.killReq) })
	return nil
}

// OutputChunk is a piece of a stream read by offset.
type OutputChunk struct {
	// Data are the bytes from Offset on.
	Data []byte
	// Offset is where Data starts: the requested offset, or later when the
	// bytes before it were dropped (Lost counts them).
	Offset, Lost int64
	// Total is how many bytes the program wrote so far.
	Total int64
	// Closed: the stream has ended, Total is final.
	Closed bool
}

// ReadOutput returns at most max bytes of stdout (stderr: false) from
// offset on. A nil chunk means the stream is not captured.
func (p *Process) ReadOutput(stderr bool, offset int64, max int) *OutputChunk {
	b := p.stdout
	if stderr {
		b = p.stderr
	}
	if b == nil {
		return nil
	}
	return b.read(offset, max)
}

// WaitChange waits at most d for new output or the exit, unless news
// (checked after subscribing, so nothing is missed) already reports some,
// or until cancel is closed.
func (p *Process) WaitChange(d time.Duration, cancel <-chan struct{}, news func() bool) {
	var a, b <-chan struct{}
	if p.stdout != nil {
		a = p.stdout.changed()
	}
	if p.stderr != nil {
		b = p.stderr.changed()
	}
	if news() {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a:
	case <-b:
	case <-p.done:
	case <-t.C:
	case <-cancel:
	}
}

// streamPipe is one output pipe of a program and the buffer it fills.
type streamPipe struct {
	r, w *os.File
	buf  *streamBuffer
	done chan struct{}
}

func newStreamPipe(max int, window bool) (*streamPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &streamPipe{r: r, w: w, buf: &streamBuffer{max: max, window: window, notify: make(chan struct{})}, done: make(chan struct{})}, nil
}

// start closes the agent's copy of the write end (the program has its own)
// and reads until every writer is gone.
func (sp *streamPipe) start() {
	sp.w.Close()
	sp.w = nil
	go func() {
		defer close(sp.done)
		_, _ = io.Copy(sp.buf, sp.r)
		sp.buf.close()
	}()
}

// wait waits for the end of the output, or gives up when deadline fires.
func (sp *streamPipe) wait(deadline <-chan time.Time) {
	select {
	case <-sp.done:
	case <-deadline:
		sp.r.Close()
		<-sp.done
	}
}

func (sp *streamPipe) close() {
	if sp.w != nil {
		sp.w.Close()
	}
	sp.r.Close()
}

// streamBuffer keeps max bytes of a stream: the first ones, or with window
// the last ones (base is then the stream offset of data[0]), so that a
// program writing without end neither blocks nor grows the agent.
type streamBuffer struct {
	mu        sync.Mutex
	max       int
	window    bool
	data      []byte
	base      int64
	total     int64
	truncated bool
	closed    bool
	notify    chan struct{} // closed and replaced at each write
}

func (b *streamBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(len(p))
	if b.window {
		b.data = append(b.data, p...)
		if over := len(b.data) - b.max; over > 0 {
			b.data = append(b.data[:0], b.data[over:]...)
			b.base += int64(over)
		}
	} else {
		room := b.max - len(b.data)
		if room >= len(p) {
			b.data = append(b.data, p...)
		} else {
			b.data = append(b.data, p[:max(room, 0)]...)
			b.truncated = true
		}
	}
	close(b.notify)
	b.notify = make(chan struct{})
	return len(p), nil
}

func (b *streamBuffer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	close(b.notify)
	b.notify = make(chan struct{})
}

func (b *streamBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return b.notify
}

// all returns a copy of the kept bytes and whether any were dropped.
func (b *streamBuffer) all() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.data), b.truncated || b.base > 0
}

func (b *streamBuffer) read(offset int64, n int) *OutputChunk {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &OutputChunk{Offset: offset, Total: b.total, Closed: b.closed}
	if offset < b.base {
		c.Lost = b.base - offset
		c.Offset = b.base
	}
	end := b.base + int64(len(b.data))
	if c.Offset >= end {
		c.Offset = min(c.Offset, b.total)
		return c
	}
	from := int(c.Offset - b.base)
	to := min(len(b.data), from+n)
	c.Data = bytes.Clone(b.data[from:to])
	return c
}

// Background command table: one for both dialects, bounded.

// MaxBackgroundCommands bounds the background commands held at once,
// running or with a result kept, across both dialects.
const MaxBackgroundCommands = 64

// BackgroundResultRetention is how long the result of an exited background
// command is kept at least.
const BackgroundResultRetention = 10 * time.Minute

// Owners of background commands: each dialect sees only its own.
const (
	OwnerRPC = "org.kvmmanager.agent.0"
	OwnerQGA = "org.qemu.guest_agent.0"
)

// Job is a background command in the table.
type Job struct {
	ID      int64
	Owner   string
	Command string
	Args    []string
	P       *Process
}

// jobTable holds the background commands; all of it is memory only, gone
// when the agent restarts.
type jobTable struct {
	mu   sync.Mutex
	jobs map[int64]*Job
	next int64
}

// expired reports whether j's result may be dropped.
func (j *Job) expired(now time.Time) bool {
	select {
	case <-j.P.done:
		return now.Sub(j.P.ended) > BackgroundResultRetention
	default:
		return false
	}
}

// prune drops the expired results of owner OwnerRPC (whose results last
// BackgroundResultRetention), and of every owner when all is set (room is
// needed). t.mu is held.
func (t *jobTable) prune(all bool) {
	now := time.Now()
	for id, j := range t.jobs {
		if (all || j.Owner == OwnerRPC) && j.expired(now) {
			delete(t.jobs, id)
		}
	}
}

// StartJob starts spec as a background command of owner. The job's ID is
// the process id for OwnerQGA (guest-exec's handle), a sequence number
// otherwise.
func (s *Service) StartJob(owner string, spec ProcessSpec) (*Job, error) {
	t := &s.jobs
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.jobs == nil {
		t.jobs = map[int64]*Job{}
	}
	t.prune(false)
	if len(t.jobs) >= MaxBackgroundCommands {
		t.prune(true)
	}
	if len(t.jobs) >= MaxBackgroundCommands {
		return nil, &TableFullError{N: MaxBackgroundCommands}
	}
	p, err := s.StartProcess(spec)
	if err != nil {
		return nil, err
	}
	j := &Job{Owner: owner, Command: spec.Path, Args: spec.Args, P: p}
	if owner == OwnerQGA {
		j.ID = int64(p.PID)
		if old := t.jobs[j.ID]; old != nil {
			// The pid of an exited, uncollected process was reused.
			s.log.Info("guest-exec: dropping the uncollected result of an earlier process with the same pid", "pid", j.ID)
		}
	} else {
		for {
			t.next++
			if _, used := t.jobs[t.next]; !used {
				break
			}
		}
		j.ID = t.next
	}
	t.jobs[j.ID] = j
	return j, nil
}

// TableFullError is StartJob's refusal when MaxBackgroundCommands are held.
type TableFullError struct{ N int }

func (e *TableFullError) Error() string {
	return fmt.Sprintf("%d background commands are running or hold results", e.N)
}

// Job returns owner's background command id, or nil.
func (s *Service) Job(owner string, id int64) *Job {
	t := &s.jobs
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(false)
	if j := t.jobs[id]; j != nil && j.Owner == owner {
		return j
	}
	return nil
}

// ForgetJob drops j from the table (its result was collected).
func (s *Service) ForgetJob(j *Job) {
	t := &s.jobs
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.jobs[j.ID] == j {
		delete(t.jobs, j.ID)
	}
}

// Jobs returns owner's background commands.
func (s *Service) Jobs(owner string) []*Job {
	t := &s.jobs
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(false)
	var out []*Job
	for _, j := range t.jobs {
		if j.Owner == owner {
			out = append(out, j)
		}
	}
	return out
}

// KillJobs kills every background command and waits at most wait for
// their ends (agent shutdown, tests).
func (s *Service) KillJobs(wait time.Duration) {
	t := &s.jobs
	t.mu.Lock()
	jobs := make([]*Job, 0, len(t.jobs))
	for _, j := range t.jobs {
		_ = j.P.Kill()
		jobs = append(jobs, j)
	}
	t.mu.Unlock()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for _, j := range jobs {
		select {
		case <-j.P.Done():
		case <-deadline.C:
			return
		}
	}
}
