// Package testrun runs the checks of `go tool mage test` as named steps
// (go vet, go test, shellcheck, actionlint): it keeps going after a failed
// step, prints progress while the long ones run (each package's result, every
// test that took long, and now and then which tests are still running) and
// ends with one summary line naming each step's outcome and the total time.
package testrun

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults of Runner's tunables.
const (
	// DefaultSlow is how long a test must take to be reported when it passes.
	DefaultSlow = 10 * time.Second
	// DefaultHeartbeat is how often the tests still running are listed.
	DefaultHeartbeat = time.Minute
)

// Counts are the tests (subtests included) of a go test step by outcome.
type Counts struct {
	Passed, Failed, Skipped int
}

// Result is the outcome of one step.
type Result struct {
	Name    string
	Tests   *Counts // set for go test steps
	Skip    string  // why the step did not run; empty when it ran
	Err     error
	Elapsed time.Duration
}

// String is the step's part of the summary line.
func (r Result) String() string {
	var s string
	switch {
	case r.Skip != "":
		return fmt.Sprintf("%s skipped (%s)", r.Name, r.Skip)
	case r.Tests != nil:
		s = fmt.Sprintf("%s %d passed, %d failed, %d skipped", r.Name, r.Tests.Passed, r.Tests.Failed, r.Tests.Skipped)
		if r.Err != nil && r.Tests.Failed == 0 {
			s += " FAIL"
		}
	case r.Err != nil:
		s = r.Name + " FAIL"
	default:
		s = r.Name + " ok"
	}
	return fmt.Sprintf("%s (%s)", s, round(r.Elapsed))
}

// Runner runs steps in the directory Dir, writing to Out.
type Runner struct {
	Dir       string
	Out       io.Writer
	Slow      time.Duration // 0 means DefaultSlow
	Heartbeat time.Duration // 0 means DefaultHeartbeat

	start   time.Time
	results []Result
}

// Func runs fn as the step name; fn's error fails the step.
func (r *Runner) Func(name string, fn func() error) {
	r.begin(name)
	t0 := time.Now()
	err := fn()
	r.end(Result{Name: name, Err: err, Elapsed: time.Since(t0)})
}

// Command runs a command as the step name, its output going to Out.
func (r *Runner) Command(ctx context.Context, name string, argv ...string) {
	r.Func(name, func() error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = r.Dir
		cmd.Stdout, cmd.Stderr = r.Out, r.Out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
		return nil
	})
}

// Skip records the step name as not run, for reason.
func (r *Runner) Skip(name, reason string) {
	r.begin(name)
	fmt.Fprintf(r.Out, "*** SKIPPING %s: %s\n", name, reason)
	r.results = append(r.results, Result{Name: name, Skip: reason})
}

// GoTest runs `go test -json args...` as the step name and reports as it
// goes: a line per package, every test that took longer than Slow, the
// output of failed tests, the reason of skipped ones, and every Heartbeat
// the tests still running.
func (r *Runner) GoTest(ctx context.Context, name string, args ...string) {
	r.begin(name)
	t0 := time.Now()
	argv := append([]string{"test", "-json"}, args...)
	fmt.Fprintf(r.Out, "go %s\n", strings.Join(argv, " "))
	// go test's stderr is copied by another goroutine than the one that
	// reports its events: one lock keeps their writes apart.
	out := &lockedWriter{w: r.Out}
	cmd := exec.CommandContext(ctx, "go", argv...)
	cmd.Dir = r.Dir
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.end(Result{Name: name, Err: fmt.Errorf("go test: %w", err), Elapsed: time.Since(t0)})
		return
	}
	if err := cmd.Start(); err != nil {
		r.end(Result{Name: name, Err: fmt.Errorf("go test: %w", err), Elapsed: time.Since(t0)})
		return
	}
	rep := newReport(out, r.slow())
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(r.heartbeat())
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				rep.heartbeat(now, time.Since(t0))
			}
		}
	}()
	perr := rep.read(stdout)
	close(done)
	werr := cmd.Wait()
	res := Result{Name: name, Tests: rep.counts(), Elapsed: time.Since(t0)}
	switch {
	case perr != nil:
		res.Err = perr
	case werr != nil:
		res.Err = fmt.Errorf("go test: %w", werr)
	case rep.counts().Failed > 0:
		res.Err = errors.New("go test: tests failed")
	}
	r.end(res)
}

func (r *Runner) slow() time.Duration {
	if r.Slow > 0 {
		return r.Slow
	}
	return DefaultSlow
}

func (r *Runner) heartbeat() time.Duration {
	if r.Heartbeat > 0 {
		return r.Heartbeat
	}
	return DefaultHeartbeat
}

func (r *Runner) begin(name string) {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	fmt.Fprintf(r.Out, "==> %s\n", name)
}

func (r *Runner) end(res Result) {
	if res.Err != nil {
		fmt.Fprintf(r.Out, "==> %s: FAIL: %v\n", res.Name, res.Err)
	}
	r.results = append(r.results, res)
}

// Results are the steps run so far.
func (r *Runner) Results() []Result { return r.results }

// Err is an error naming the failed steps, or nil.
func (r *Runner) Err() error {
	var failed []string
	for _, res := range r.results {
		if res.Err != nil {
			failed = append(failed, res.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// Summary is the closing line: PASS or FAIL, the total time, and each step.
func (r *Runner) Summary() string {
	status := "PASS"
	if r.Err() != nil {
		status = "FAIL"
	}
	parts := make([]string, len(r.results))
	for i, res := range r.results {
		parts[i] = res.String()
	}
	var total time.Duration
	if !r.start.IsZero() {
		total = time.Since(r.start)
	}
	return fmt.Sprintf("%s in %s: %s", status, round(total), strings.Join(parts, "; "))
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// event is one line of `go test -json` (test2json's TestEvent, plus the
// build events go test mixes in).
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string // build-output events
}

// report follows one go test -json stream.
type report struct {
	out  io.Writer
	slow time.Duration

	mu      sync.Mutex
	n       Counts
	running map[string]time.Time // "pkg Test/sub" -> start
	output  map[string][]string  // "pkg Test/sub" or "pkg" -> lines
}

func newReport(out io.Writer, slow time.Duration) *report {
	return &report{out: out, slow: slow, running: map[string]time.Time{}, output: map[string][]string{}}
}

// read consumes the stream; a line that is not JSON is printed as it is.
func (p *report) read(rd io.Reader) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			p.print("%s\n", line)
			continue
		}
		p.handle(e, time.Now())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read go test -json output: %w", err)
	}
	return nil
}

func (p *report) handle(e event, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := short(e.Package)
	if e.Test != "" {
		key += " " + e.Test
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(p.out, e.Output)
	case "run", "cont":
		// A parallel subtest pauses until its parent's function returns
		// and runs from "cont": its time counts from then.
		p.running[key] = now
	case "pause":
		delete(p.running, key)
	case "output":
		if strings.HasPrefix(e.Output, "=== ") || strings.HasPrefix(strings.TrimSpace(e.Output), "--- PASS") {
			return
		}
		p.output[key] = append(p.output[key], e.Output)
	case "pass", "fail", "skip":
		delete(p.running, key)
		lines := p.output[key]
		delete(p.output, key)
		if e.Test == "" {
			p.packageDone(e, lines)
			return
		}
		switch e.Action {
		case "pass":
			p.n.Passed++
			if d := seconds(e.Elapsed); d >= p.slow {
				fmt.Fprintf(p.out, "    PASS %s (%s)\n", key, round(d))
			}
		case "fail":
			p.n.Failed++
			fmt.Fprintf(p.out, "    FAIL %s (%s)\n", key, round(seconds(e.Elapsed)))
			for _, l := range lines {
				fmt.Fprint(p.out, "    "+l)
			}
		case "skip":
			p.n.Skipped++
			fmt.Fprintf(p.out, "    SKIP %s: %s\n", key, skipReason(lines))
		}
	}
}

// packageDone prints go test's line for a package; a failed package also
// gets its own output (a panic, a TestMain error, go test's FAIL lines).
func (p *report) packageDone(e event, lines []string) {
	name := short(e.Package)
	switch e.Action {
	case "pass":
		fmt.Fprintf(p.out, "ok   %s (%s)\n", name, round(seconds(e.Elapsed)))
	case "skip":
		// no test files: nothing to say
	case "fail":
		for _, l := range lines {
			if t := strings.TrimSpace(l); t == "FAIL" || strings.HasPrefix(t, "FAIL\t") {
				continue
			}
			fmt.Fprint(p.out, "    "+l)
		}
		fmt.Fprintf(p.out, "FAIL %s (%s)\n", name, round(seconds(e.Elapsed)))
	}
}

// heartbeat lists the innermost tests still running, with how long each has.
func (p *report) heartbeat(now time.Time, total time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var leaves []string
	for k := range p.running {
		inner := false
		for o := range p.running {
			if strings.HasPrefix(o, k+"/") {
				inner = true
				break
			}
		}
		if !inner {
			leaves = append(leaves, k)
		}
	}
	if len(leaves) == 0 {
		return
	}
	sort.Slice(leaves, func(i, j int) bool { return p.running[leaves[i]].Before(p.running[leaves[j]]) })
	parts := make([]string, len(leaves))
	for i, k := range leaves {
		parts[i] = fmt.Sprintf("%s (%s)", k, round(now.Sub(p.running[k])))
	}
	fmt.Fprintf(p.out, "    ... %s in, running: %s\n", round(total), strings.Join(parts, ", "))
}

func (p *report) counts() *Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.n
	return &c
}

func (p *report) print(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format, args...)
}

// skipReason picks the line that says why a test was skipped.
func skipReason(lines []string) string {
	for _, l := range lines {
		if i := strings.Index(l, "SKIP"); i >= 0 && !strings.Contains(l, "--- SKIP") {
			return strings.TrimSpace(l[i:])
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if t := strings.TrimSpace(lines[i]); t != "" && !strings.HasPrefix(t, "--- SKIP") {
			return t
		}
	}
	return "no reason given"
}

// short drops the module path from a package path.
func short(pkg string) string {
	return strings.TrimPrefix(pkg, "github.com/kvmmanager/guest-agent/")
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// round shortens a duration for humans: 1.2s, 3m4s.
func round(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
