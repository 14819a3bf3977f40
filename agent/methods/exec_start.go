//go:build !windows

package methods

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Protocol 1.1's background commands: exec_start, exec_status, exec_kill,
// over the background process machinery shared with the QGA dialect
// (process.go). The table is the agent's memory only: an agent restart
// kills every background command (they are in the agent's cgroup) and
// forgets their results.

// maxStatusWait bounds exec_status's wait_seconds.
const maxStatusWait = 10

func (s *Service) execStart(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.ExecStartParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Command == "" {
		return nil, invalidParams(`"command" is required`)
	}
	timeout := min(s.cfg.CommandTimeoutSeconds, s.cfg.MaxBackgroundSeconds)
	if p.TimeoutSeconds != nil {
		if *p.TimeoutSeconds < 1 {
			return nil, invalidParams(`"timeout_seconds" must be at least 1, got %d`, *p.TimeoutSeconds)
		}
		timeout = min(*p.TimeoutSeconds, s.cfg.MaxBackgroundSeconds)
	}
	spec := ProcessSpec{
		Path: p.Command, Args: p.Args, Env: p.Env, Dir: p.WorkingDirectory,
		Stream: true, Timeout: time.Duration(timeout) * time.Second,
	}
	if p.CaptureOutput == nil || *p.CaptureOutput {
		if p.MergeOutput {
			spec.MergeOutput = true
		} else {
			spec.CaptureStdout, spec.CaptureStderr = true, true
		}
	}
	if p.Stdin != nil {
		enc, err := checkEncoding(p.StdinEncoding)
		if err != nil {
			return nil, invalidParams(`"stdin_encoding" must be "utf8" or "base64", got %q`, p.StdinEncoding)
		}
		in := []byte(*p.Stdin)
		if enc == protocol.EncodingBase64 {
			if in, err = base64Enc.DecodeString(*p.Stdin); err != nil {
				return nil, invalidParams(`"stdin" is not valid base64: %v`, err)
			}
		}
		if int64(len(in)) > s.cfg.MaxFileSizeBytes {
			return nil, protocol.Errorf(protocol.CodePermissionDenied, "stdin is %d bytes, over max_file_size_bytes (%d)", len(in), s.cfg.MaxFileSizeBytes)
		}
		spec.Stdin = in
	} else if p.StdinEncoding != "" {
		return nil, invalidParams(`"stdin_encoding" without "stdin"`)
	}
	if spec.Dir != "" {
		var err error
		if spec.Dir, err = s.workingDir(ctx, spec.Dir); err != nil {
			return nil, err
		}
	}
	j, err := s.StartJob(OwnerRPC, spec)
	var full *TableFullError
	if errors.As(err, &full) {
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "%v; kill one or wait until results expire (%v after exit)", err, BackgroundResultRetention)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("exec_start", "id", j.ID, "command", p.Command, "pid", j.P.PID, "timeout_seconds", timeout)
	return protocol.ExecStartResult{ID: j.ID, PID: j.P.PID, TimeoutSeconds: timeout}, nil
}

func (s *Service) jobParam(id int64) (*Job, error) {
	j := s.Job(OwnerRPC, id)
	if j == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "background command %d not found (never started, expired %v after its exit, or the agent restarted)", id, BackgroundResultRetention)
	}
	return j, nil
}

func (s *Service) execStatus(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.ExecStatusParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	enc, err := checkEncoding(p.Encoding)
	if err != nil {
		return nil, err
	}
	switch {
	case p.StdoutOffset < 0 || p.StderrOffset < 0:
		return nil, invalidParams("offsets must not be negative")
	case p.MaxBytes < 0:
		return nil, invalidParams(`"max_bytes" must not be negative, got %d`, p.MaxBytes)
	case p.WaitSeconds < 0 || p.WaitSeconds > maxStatusWait:
		return nil, invalidParams(`"wait_seconds" must be between 0 and %d, got %v`, maxStatusWait, p.WaitSeconds)
	}
	limit := s.cfg.MaxOutputBytes
	if p.MaxBytes > 0 {
		limit = min(p.MaxBytes, limit)
	}
	j, err := s.jobParam(p.ID)
	if err != nil {
		return nil, err
	}
	pr := j.P
	if p.WaitSeconds > 0 {
		pr.WaitChange(time.Duration(p.WaitSeconds*float64(time.Second)), ctx.Done(), func() bool { return hasNews(pr, p) })
	}
	res := protocol.ExecStatusResult{ID: j.ID, PID: pr.PID, Command: j.Command, Args: j.Args, Encoding: enc, StartedAt: pr.Started.Unix()}
	if res.Args == nil {
		res.Args = []string{}
	}
	// The state first, then the output: output read after the exit is
	// known complete.
	var st ProcessStatus
	select {
	case <-pr.Done():
		st = pr.Status()
	default:
		res.Running = true
	}
	if res.Running {
		res.DurationMS = time.Since(pr.Started).Milliseconds()
	} else {
		res.DurationMS = st.Ended.Sub(pr.Started).Milliseconds()
		res.TimedOut, res.Killed = st.TimedOut, st.Killed
		switch {
		case st.Signal != nil:
			code := 128 + *st.Signal
			res.ExitCode, res.Signal = &code, st.Signal
		case st.ExitCode != nil:
			res.ExitCode = st.ExitCode
		}
	}
	res.Stdout = streamOut(pr.ReadOutput(false, p.StdoutOffset, limit), p.StdoutOffset, enc, !res.Running)
	res.Stderr = streamOut(pr.ReadOutput(true, p.StderrOffset, limit), p.StderrOffset, enc, !res.Running)
	res.Complete = !res.Running && res.Stdout.EOF && res.Stderr.EOF
	return res, nil
}

// hasNews reports whether exec_status would return something new: the
// command has exited or a stream has bytes past the host's offset.
func hasNews(pr *Process, p protocol.ExecStatusParams) bool {
	select {
	case <-pr.Done():
		return true
	default:
	}
	for _, c := range []*OutputChunk{pr.ReadOutput(false, p.StdoutOffset, 1), pr.ReadOutput(true, p.StderrOffset, 1)} {
		if c != nil && (len(c.Data) > 0 || c.Lost > 0) {
			return true
		}
	}
	return false
}

// streamOut encodes a chunk. In utf8, a multi-byte character cut at the end
// of the chunk is left for the next call (unless the stream has ended) and
// invalid bytes become U+FFFD; base64 is exact. exited: the command and its
// output are complete.
func streamOut(c *OutputChunk, offset int64, enc string, exited bool) protocol.Stream {
	if c == nil {
		return protocol.Stream{Offset: offset, NextOffset: offset, EOF: true}
	}
	data := c.Data
	end := c.Offset + int64(len(data))
	atEnd := exited && c.Closed && end == c.Total
	if enc == protocol.EncodingUTF8 && !atEnd {
		data = data[:utf8Complete(data)]
	}
	out := protocol.Stream{
		Offset: c.Offset, NextOffset: c.Offset + int64(len(data)), Lost: c.Lost, Total: c.Total, Captured: true,
	}
	out.EOF = exited && c.Closed && out.NextOffset == c.Total
	if enc == protocol.EncodingBase64 {
		out.Data = base64.StdEncoding.EncodeToString(data)
	} else {
		out.Data = strings.ToValidUTF8(string(data), "\uFFFD")
	}
	return out
}

// utf8Complete returns the length of b without a trailing incomplete (but
// so far valid) UTF-8 sequence.
func utf8Complete(b []byte) int {
	for i := 1; i <= 3 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < 0x80 {
			return len(b)
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return len(b) - i
			}
			return len(b)
		}
	}
	return len(b)
}

func (s *Service) execKill(_ context.Context, params json.RawMessage) (any, error) {
	var p protocol.ExecKillParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	j, err := s.jobParam(p.ID)
	if err != nil {
		return nil, err
	}
	select {
	case <-j.P.Done():
		return protocol.ExecKillResult{ID: j.ID, Killed: false}, nil
	default:
	}
	_ = j.P.Kill()
	<-j.P.Done() // the container's kill waits until it is empty
	s.log.Info("exec_kill", "id", j.ID, "pid", j.P.PID)
	return protocol.ExecKillResult{ID: j.ID, Killed: j.P.Status().Killed}, nil
}
