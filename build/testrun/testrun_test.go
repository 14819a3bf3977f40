package testrun

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stream is a go test -json run of two packages: one passes (a slow test,
// a skipped one with testenv's reason, a quick one), one fails a subtest,
// plus a package that does not build.
const stream = `{"Action":"start","Package":"github.com/kvmmanager/guest-agent/build/e2e"}
{"Action":"run","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestVM"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestVM","Output":"=== RUN   TestVM\n"}
{"Action":"run","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestVM/amd64"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestVM/amd64","Output":"    vm_test.go:80: booted\n"}
{"Action":"pass","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestVM/amd64","Elapsed":95.2}
{"Action":"pass","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestVM","Elapsed":95.3}
{"Action":"run","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestQuick"}
{"Action":"pass","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestQuick","Elapsed":0.01}
{"Action":"run","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestTool"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestTool","Output":"\n"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestTool","Output":"*** SKIPPING TestTool: command \"rpm\" not found on PATH (install it)\n"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestTool","Output":"--- SKIP: TestTool (0.00s)\n"}
{"Action":"skip","Package":"github.com/kvmmanager/guest-agent/build/e2e","Test":"TestTool","Elapsed":0}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/e2e","Output":"ok  \tgithub.com/kvmmanager/guest-agent/build/e2e\t95.4s\n"}
{"Action":"pass","Package":"github.com/kvmmanager/guest-agent/build/e2e","Elapsed":95.4}
{"Action":"start","Package":"github.com/kvmmanager/guest-agent/agent/server"}
{"Action":"run","Package":"github.com/kvmmanager/guest-agent/agent/server","Test":"TestLimits"}
{"Action":"run","Package":"github.com/kvmmanager/guest-agent/agent/server","Test":"TestLimits/batch"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/agent/server","Test":"TestLimits/batch","Output":"    server_test.go:12: got 1025 replies, want an error\n"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/agent/server","Test":"TestLimits/batch","Output":"--- FAIL: TestLimits/batch (0.20s)\n"}
{"Action":"fail","Package":"github.com/kvmmanager/guest-agent/agent/server","Test":"TestLimits/batch","Elapsed":0.2}
{"Action":"fail","Package":"github.com/kvmmanager/guest-agent/agent/server","Test":"TestLimits","Elapsed":0.2}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/agent/server","Output":"FAIL\n"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/agent/server","Output":"FAIL\tgithub.com/kvmmanager/guest-agent/agent/server\t0.3s\n"}
{"Action":"fail","Package":"github.com/kvmmanager/guest-agent/agent/server","Elapsed":0.3}
{"ImportPath":"github.com/kvmmanager/guest-agent/build/iso","Action":"build-output","Output":"build/iso/iso.go:3:1: syntax error\n"}
{"ImportPath":"github.com/kvmmanager/guest-agent/build/iso","Action":"build-fail"}
{"Action":"start","Package":"github.com/kvmmanager/guest-agent/build/iso"}
{"Action":"output","Package":"github.com/kvmmanager/guest-agent/build/iso","Output":"FAIL\tgithub.com/kvmmanager/guest-agent/build/iso [build failed]\n"}
{"Action":"fail","Package":"github.com/kvmmanager/guest-agent/build/iso","Elapsed":0,"FailedBuild":"github.com/kvmmanager/guest-agent/build/iso"}
{"Action":"skip","Package":"github.com/kvmmanager/guest-agent/agent/version"}
not json: go: downloading something
`

func TestReport(t *testing.T) {
	var out bytes.Buffer
	rep := newReport(&out, 10*time.Second)
	if err := rep.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if got, want := *rep.counts(), (Counts{Passed: 3, Failed: 2, Skipped: 1}); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
	text := out.String()
	for _, want := range []string{
		"    PASS build/e2e TestVM/amd64 (1m35s)\n",
		"    PASS build/e2e TestVM (1m35s)\n",
		`    SKIP build/e2e TestTool: SKIPPING TestTool: command "rpm" not found on PATH (install it)` + "\n",
		"ok   build/e2e (1m35s)\n",
		"    FAIL agent/server TestLimits/batch (200ms)\n",
		"        server_test.go:12: got 1025 replies, want an error\n",
		"build/iso/iso.go:3:1: syntax error\n",
		"FAIL build/iso (0s)\n",
		"FAIL agent/server (300ms)\n",
		"not json: go: downloading something\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for _, unwanted := range []string{"TestQuick", "booted", "=== RUN", "agent/version", "FAIL\tgithub.com/kvmmanager/guest-agent/agent/server"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, text)
		}
	}
}

func TestHeartbeatListsInnermostRunningTests(t *testing.T) {
	var out bytes.Buffer
	rep := newReport(&out, time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, name := range []string{"TestDistro", "TestDistro/systemd", "TestDistro/openrc"} {
		rep.handle(event{Action: "run", Package: "github.com/kvmmanager/guest-agent/build/distro", Test: name}, t0.Add(time.Duration(i)*time.Second))
	}
	rep.handle(event{Action: "run", Package: "github.com/kvmmanager/guest-agent/build/e2e", Test: "TestVM"}, t0.Add(5*time.Second))
	// A parallel subtest that waits does not count as running.
	rep.handle(event{Action: "run", Package: "github.com/kvmmanager/guest-agent/build/distro", Test: "TestDistro/noport"}, t0)
	rep.handle(event{Action: "pause", Package: "github.com/kvmmanager/guest-agent/build/distro", Test: "TestDistro/noport"}, t0)
	rep.heartbeat(t0.Add(2*time.Minute), 3*time.Minute)
	want := "    ... 3m0s in, running: build/distro TestDistro/systemd (1m59s), build/distro TestDistro/openrc (1m58s), build/e2e TestVM (1m55s)\n"
	if out.String() != want {
		t.Errorf("heartbeat printed\n%q\nwant\n%q", out.String(), want)
	}
	out.Reset()
	rep.handle(event{Action: "cont", Package: "github.com/kvmmanager/guest-agent/build/distro", Test: "TestDistro/noport"}, t0.Add(110*time.Second))
	rep.heartbeat(t0.Add(2*time.Minute), 3*time.Minute)
	if want := "build/distro TestDistro/noport (10s)"; !strings.Contains(out.String(), want) {
		t.Errorf("heartbeat after cont printed %q, want %q in it", out.String(), want)
	}
	out.Reset()
	rep = newReport(&out, time.Second)
	rep.heartbeat(t0, time.Minute)
	if out.Len() != 0 {
		t.Errorf("heartbeat with nothing running printed %q", out.String())
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		name    string
		results []Result
		want    string // after "PASS in 0s: " or "FAIL in 0s: "
		wantErr string
	}{
		{"all pass", []Result{
			{Name: "go vet", Elapsed: 12 * time.Second},
			{Name: "go test ./agent/... -race", Tests: &Counts{Passed: 800, Skipped: 2}, Elapsed: 100 * time.Second},
			{Name: "actionlint", Elapsed: 1500 * time.Millisecond},
		}, "PASS in 0s: go vet ok (12s); go test ./agent/... -race 800 passed, 0 failed, 2 skipped (1m40s); actionlint ok (1.5s)", ""},
		{"failures and a skipped step", []Result{
			{Name: "go vet", Err: errors.New("exit status 1")},
			{Name: "go test", Tests: &Counts{Passed: 5, Failed: 1}, Err: errors.New("tests failed")},
			{Name: "go test build", Tests: &Counts{Passed: 5}, Err: errors.New("build failed")},
			{Name: "shellcheck", Skip: "not installed"},
		}, "FAIL in 0s: go vet FAIL (0s); go test 5 passed, 1 failed, 0 skipped (0s); go test build 5 passed, 0 failed, 0 skipped FAIL (0s); shellcheck skipped (not installed)",
			"failed: go vet, go test, go test build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runner{results: tt.results}
			if got := r.Summary(); got != tt.want {
				t.Errorf("Summary() =\n%s\nwant\n%s", got, tt.want)
			}
			err := r.Err()
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("Err() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunnerSteps(t *testing.T) {
	var out bytes.Buffer
	r := &Runner{Dir: t.TempDir(), Out: &out}
	r.Func("first", func() error { return nil })
	r.Command(t.Context(), "false", "false")
	r.Skip("third", "not installed")
	res := r.Results()
	if len(res) != 3 || res[0].Err != nil || res[1].Err == nil || res[2].Skip != "not installed" {
		t.Fatalf("results = %+v", res)
	}
	for _, want := range []string{"==> first\n", "==> false\n", "==> false: FAIL: false: exit status 1\n", "*** SKIPPING third: not installed\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.HasPrefix(r.Summary(), "FAIL in ") {
		t.Errorf("Summary() = %s, want FAIL", r.Summary())
	}
}

// TestGoTestRealRun runs go test -json on a small module with a passing, a
// skipped and a failing test, as `go tool mage test` runs the real suite.
func TestGoTestRealRun(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/demo\n\ngo 1.21\n",
		"demo_test.go": `package demo

import "testing"

func TestPasses(t *testing.T) {}
func TestSkips(t *testing.T)  { t.Skip("SKIP: no such tool") }
func TestFails(t *testing.T)  { t.Error("the answer is 41") }
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	r := &Runner{Dir: dir, Out: &out}
	r.GoTest(t.Context(), "demo tests", "-count=1", "./...")
	res := r.Results()
	if len(res) != 1 || res[0].Tests == nil {
		t.Fatalf("results = %+v\n%s", res, out.String())
	}
	if got, want := *res[0].Tests, (Counts{Passed: 1, Failed: 1, Skipped: 1}); got != want {
		t.Errorf("counts = %+v, want %+v\n%s", got, want, out.String())
	}
	if res[0].Err == nil {
		t.Errorf("a failed test left the step without an error")
	}
	for _, want := range []string{"    FAIL example.com/demo TestFails", "the answer is 41", "    SKIP example.com/demo TestSkips: SKIP: no such tool", "FAIL example.com/demo ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if s := r.Summary(); !strings.HasPrefix(s, "FAIL in ") || !strings.Contains(s, "demo tests 1 passed, 1 failed, 1 skipped") {
		t.Errorf("Summary() = %s", s)
	}
}
