package methods

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/policy"
)

// fakeSystem drives systemPower with recorded commands and no real effect.
type fakeSystem struct {
	mu        sync.Mutex
	events    []string
	present   map[string]bool // commands found in PATH
	failing   map[string]bool // commands that exit non-zero
	rebootErr error
	graces    []time.Duration
}

func (f *fakeSystem) power() *systemPower {
	return &systemPower{
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		resolve: func(name string) (string, error) {
			if f.present[name] {
				return "/usr/bin/" + name, nil
			}
			return "", policy.ErrCommandNotFound
		},
		run: func(path string, args ...string) error {
			f.record("run " + strings.Join(append([]string{path}, args...), " "))
			if f.failing[path] {
				return errors.New("exit status 1")
			}
			return nil
		},
		after: func(d time.Duration) <-chan time.Time {
			f.mu.Lock()
			f.graces = append(f.graces, d)
			f.mu.Unlock()
			f.record("wait")
			ch := make(chan time.Time, 1)
			ch <- time.Time{}
			return ch
		},
		sync: func() { f.record("sync") },
		reboot: func(k PowerKind) error {
			f.record("reboot(2) " + k.String())
			return f.rebootErr
		},
	}
}

func (f *fakeSystem) record(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func TestSystemPowerSequence(t *testing.T) {
	all := map[string]bool{"systemctl": true, "shutdown": true, "poweroff": true, "reboot": true}
	tests := []struct {
		name    string
		kind    PowerKind
		force   bool
		present map[string]bool
		failing map[string]bool
		want    []string
	}{
		// Not forced: the init system is asked, reboot(2) never called.
		{"systemd", PowerOff, false, all, nil,
			[]string{"run /usr/bin/systemctl poweroff", "wait"}},
		{"systemd reboot", Reboot, false, all, nil,
			[]string{"run /usr/bin/systemctl reboot", "wait"}},
		{"systemctl present but not running systemd", PowerOff, false, all, map[string]bool{"/usr/bin/systemctl": true},
			[]string{"run /usr/bin/systemctl poweroff", "run /usr/bin/shutdown -h now", "wait"}},
		{"busybox only", Reboot, false, map[string]bool{"poweroff": true, "reboot": true}, nil,
			[]string{"run /usr/bin/reboot", "wait"}},
		// Forced with a grace: the init system first, reboot(2) after it.
		{"forced with a grace", PowerOff, true, all, nil,
			[]string{"run /usr/bin/systemctl poweroff", "wait", "sync", "reboot(2) power off"}},
		{"forced, nothing works: force at once", PowerOff, true, map[string]bool{"shutdown": true}, map[string]bool{"/usr/bin/shutdown": true},
			[]string{"run /usr/bin/shutdown -h now", "sync", "reboot(2) power off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSystem{present: tt.present, failing: tt.failing}
			if err := f.power().Power(tt.kind, tt.force, 7*time.Second); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.events, tt.want) {
				t.Fatalf("events\n%q\nwant\n%q", f.events, tt.want)
			}
			for _, g := range f.graces {
				if g != 7*time.Second {
					t.Fatalf("waited %v, want the request's 7s", g)
				}
			}
		})
	}
}

// Without force the agent never hard-resets the guest: not after a grace of
// 0 (the red-team case: reboot(2) came right after asking init), not when
// no init command works.
func TestSystemPowerNeverForcesUnasked(t *testing.T) {
	all := map[string]bool{"systemctl": true, "shutdown": true, "poweroff": true, "reboot": true}
	tests := []struct {
		name    string
		present map[string]bool
		failing map[string]bool
		grace   time.Duration
		wantErr bool
		want    []string
	}{
		{"timeout 0", all, nil, 0, false, []string{"run /usr/bin/systemctl poweroff"}},
		{"init never reacts", all, nil, time.Second, false, []string{"run /usr/bin/systemctl poweroff", "wait"}},
		{"no init command works", map[string]bool{"shutdown": true}, map[string]bool{"/usr/bin/shutdown": true}, 0, true, []string{"run /usr/bin/shutdown -h now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSystem{present: tt.present, failing: tt.failing}
			err := f.power().Power(PowerOff, false, tt.grace)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(f.events, tt.want) {
				t.Fatalf("events\n%q\nwant\n%q", f.events, tt.want)
			}
		})
	}
	// Forced without a grace: at once, the init system skipped.
	f := &fakeSystem{present: all}
	if err := f.power().Power(Reboot, true, 0); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sync", "reboot(2) reboot"}; !slices.Equal(f.events, want) {
		t.Fatalf("forced: events %q, want %q", f.events, want)
	}
}

func TestSystemPowerRebootError(t *testing.T) {
	f := &fakeSystem{rebootErr: errors.New("operation not permitted")}
	err := f.power().Power(PowerOff, true, 0)
	if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("err = %v, want the reboot(2) error", err)
	}
}

func TestRunInitCommand(t *testing.T) {
	needSystemCommands(t, "true", "sh")
	c := policy.NewCommands(false, nil, nil)
	truePath, _ := c.Resolve("true")
	shPath, _ := c.Resolve("sh")
	if err := runInitCommand(truePath); err != nil {
		t.Fatalf("true: %v", err)
	}
	err := runInitCommand(shPath, "-c", "echo System has not been booted with systemd >&2; exit 1")
	if err == nil || !strings.Contains(err.Error(), "not been booted") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err = %v, want the exit status and the command's message", err)
	}
}
