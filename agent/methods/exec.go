package methods

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// pipeDrainDelay is how long exec_command waits, once the command and
// everything it started were killed, for its output pipes to close: only a
// process outside its container (which should not exist) could hold them.
const pipeDrainDelay = 2 * time.Second

// exec_command: run a program (never through a shell) with a timeout, its
// stdin on /dev/null (NUL on Windows) and its output captured up to
// max_output_bytes per stream; run, per OS, starts it in a container that is
// killed whole at the end (exec_unix.go: a cgroup or the subreaper's
// bookkeeping; exec_windows.go: a job object).
func (s *Service) execCommand(ctx context.Context, params json.RawMessage) (any, error) {
	p, timeout, capture, err := s.decodeExecParams(params)
	if err != nil {
		return nil, err
	}
	if p.WorkingDirectory != "" {
		if p.WorkingDirectory, err = s.workingDir(ctx, p.WorkingDirectory); err != nil {
			return nil, err
		}
	}
	path, err := s.commands.Resolve(p.Command)
	if err != nil {
		return nil, commandError(err)
	}
	return s.run(ctx, path, p, time.Duration(timeout)*time.Second, capture)
}

// workingDirError is the error for the working_directory wd whose stat
// gave fi and err: nil when it is a directory.
func workingDirError(wd string, fi fs.FileInfo, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return protocol.Errorf(protocol.CodeNotFound, "working_directory %q does not exist", wd)
	case err != nil:
		return protocol.Errorf(protocol.CodeCommandFailed, "working_directory: %v", err)
	case !fi.IsDir():
		return invalidParams("working_directory %q is not a directory", wd)
	}
	return nil
}

func commandError(err error) error {
	switch {
	case errors.Is(err, policy.ErrBadCommand):
		return invalidParams("%v", err)
	case errors.Is(err, policy.ErrNotWhitelisted):
		return protocol.Errorf(protocol.CodePermissionDenied, "%v", err)
	case errors.Is(err, policy.ErrNotExecutable):
		return protocol.Errorf(protocol.CodePermissionDenied, "%v", err)
	case errors.Is(err, policy.ErrCommandNotFound):
		return protocol.Errorf(protocol.CodeNotFound, "%v", err)
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "%v", err)
}

// cappedBuffer keeps the first max bytes written to it and counts the rest
// away, so that a command writing without end neither blocks on a full pipe
// nor grows the agent's memory.
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func newCappedBuffer(max int) *cappedBuffer {
	return &cappedBuffer{max: max}
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
	} else {
		if room > 0 {
			b.buf = append(b.buf, p[:room]...)
		}
		b.truncated = true
	}
	return len(p), nil
}

// result returns the output as valid UTF-8 (invalid sequences become
// U+FFFD) and whether bytes were dropped. The output is cut so that its JSON
// encoding (what goes on the wire: a NUL byte is 6 bytes "\u0000", an invalid
// byte 3 of U+FFFD) is at most max bytes.
func (b *cappedBuffer) result() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := strings.ToValidUTF8(string(b.buf), "\uFFFD")
	if cut := wireCut(out, b.max); cut < len(out) {
		return out[:cut], true
	}
	return out, b.truncated
}

// wireCut returns the length of the longest prefix of the valid UTF-8 text s
// whose JSON string encoding (without quotes) is at most max bytes.
func wireCut(s string, max int) int {
	n := 0
	for i, r := range s {
		w := utf8.RuneLen(r)
		switch {
		case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
			w = 2
		case r < 0x20 || r == 0x2028 || r == 0x2029: // the server does not escape <, > and &
			w = 6
		}
		if n+w > max {
			return i
		}
		n += w
	}
	return len(s)
}
