package methods

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// fsfreezeStateFile records a freeze in /run (a tmpfs, never frozen) so
// that an agent restarted while file systems are frozen (a crash, a
// systemd restart) knows it: it goes back to the frozen state, keeps the
// auto-thaw deadline, and a host can still thaw. qemu-ga keeps the same
// knowledge in its state directory.
const fsfreezeStateFile = "/run/kvmmanager-agent/fsfreeze.json"

type fsfreezeRecord struct {
	Mountpoints []string `json:"mountpoints"`
	Deadline    int64    `json:"deadline_unix_ns"`
}

func (s *Service) freezeStatePath() string {
	if s.guest.stateFile != "" {
		return s.guest.stateFile
	}
	return s.hostPath(fsfreezeStateFile)
}

// saveFreezeState writes the record before the first FIFREEZE.
func (s *Service) saveFreezeState(mounts []string, deadline time.Time) error {
	p := s.freezeStatePath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(fsfreezeRecord{Mountpoints: mounts, Deadline: deadline.UnixNano()})
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (s *Service) clearFreezeState() {
	if err := os.Remove(s.freezeStatePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cannot remove the fsfreeze record", "path", s.freezeStatePath(), "err", err)
	}
}

// recoverFreeze runs when the service starts: a record left by a previous
// agent means file systems may still be frozen. The service then starts
// frozen, with the old deadline (a passed deadline thaws at once). Nothing
// is logged before the thaw.
func (s *Service) recoverFreeze() {
	b, err := os.ReadFile(s.freezeStatePath())
	if err != nil {
		return
	}
	var rec fsfreezeRecord
	if json.Unmarshal(b, &rec) != nil {
		rec = fsfreezeRecord{Deadline: time.Now().UnixNano()}
	}
	f := &s.guest.freeze
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
	f.mounts = rec.Mountpoints
	if f.mounts == nil {
		f.mounts = []string{}
	}
	f.gen++
	gen := f.gen
	f.deadline = time.Unix(0, rec.Deadline)
	f.timer = time.AfterFunc(max(0, time.Until(f.deadline)), func() { s.autoThaw(gen) })
}
