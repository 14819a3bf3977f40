package methods

import (
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"
)

type shutdownCall struct{ flags, grace uint32 }

func TestWindowsPower(t *testing.T) {
	tests := []struct {
		name   string
		kind   PowerKind
		force  bool
		refuse bool // the first InitiateShutdownW fails
		wait   bool // the grace period passes with the machine still up
		want   []shutdownCall
		waited time.Duration
	}{
		{"forced power off", PowerOff, true, false, false, []shutdownCall{{shutdownPowerOff | shutdownForceOthers | shutdownForceSelf, 0}}, 0},
		{"forced reboot", Reboot, true, false, false, []shutdownCall{{shutdownRestart | shutdownForceOthers | shutdownForceSelf, 0}}, 0},
		{"graceful power off, still up after grace: forced", PowerOff, false, false, true,
			[]shutdownCall{{shutdownPowerOff | shutdownGraceOverride, 7}, {shutdownPowerOff | shutdownForceOthers | shutdownForceSelf, 0}}, 7*time.Second + forceMargin},
		{"graceful reboot refused: forced at once", Reboot, false, true, false,
			[]shutdownCall{{shutdownRestart | shutdownGraceOverride, 7}, {shutdownRestart | shutdownForceOthers | shutdownForceSelf, 0}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []shutdownCall
			var waited time.Duration
			p := &windowsPower{
				log:    slog.New(slog.DiscardHandler),
				enable: func() error { return nil },
				initiate: func(flags, grace uint32) error {
					calls = append(calls, shutdownCall{flags, grace})
					if tt.refuse && len(calls) == 1 {
						return errors.New("refused")
					}
					return nil
				},
				after: func(d time.Duration) <-chan time.Time {
					waited = d
					ch := make(chan time.Time, 1)
					ch <- time.Time{}
					return ch
				},
			}
			if err := p.Power(tt.kind, tt.force, 7*time.Second); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(calls, tt.want) || waited != tt.waited {
				t.Errorf("InitiateShutdownW calls %+v (waited %v), want %+v (waited %v)", calls, waited, tt.want, tt.waited)
			}
		})
	}
	p := &windowsPower{log: slog.New(slog.DiscardHandler), enable: func() error { return errors.New("no privilege") },
		initiate: func(uint32, uint32) error { t.Error("InitiateShutdownW called without the privilege"); return nil }}
	if err := p.Power(PowerOff, true, 0); err == nil {
		t.Error("Power without SE_SHUTDOWN_NAME succeeded")
	}
}

// TestEnableShutdownPrivilege runs the real token adjustment (harmless).
func TestEnableShutdownPrivilege(t *testing.T) {
	if err := enableShutdownPrivilege(); err != nil {
		t.Errorf("enableShutdownPrivilege: %v", err)
	}
}
