package client

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strconv"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Protocol 1.1 methods: background commands, chunked transfers, file_stat
// and the guest operations.

// ExecStart calls exec_start.
func (c *Client) ExecStart(ctx context.Context, p protocol.ExecStartParams) (protocol.ExecStartResult, error) {
	var r protocol.ExecStartResult
	return r, c.Call(ctx, protocol.MethodExecStart, p, &r)
}

// ExecStatus calls exec_status.
func (c *Client) ExecStatus(ctx context.Context, p protocol.ExecStatusParams) (protocol.ExecStatusResult, error) {
	var r protocol.ExecStatusResult
	return r, c.Call(ctx, protocol.MethodExecStatus, p, &r)
}

// ExecKill calls exec_kill.
func (c *Client) ExecKill(ctx context.Context, id int64) (protocol.ExecKillResult, error) {
	var r protocol.ExecKillResult
	return r, c.Call(ctx, protocol.MethodExecKill, protocol.ExecKillParams{ID: id}, &r)
}

// FollowWait is how long each exec_status of ExecFollow waits for output.
const FollowWait = 5

// ExecFollow streams background command id's output to stdout and stderr
// (raw bytes) until it has exited and its output is complete, and returns
// the last status. Output the agent no longer kept (the host fell behind
// by more than max_output_bytes) is reported by lost, if not nil.
func (c *Client) ExecFollow(ctx context.Context, id int64, stdout, stderr io.Writer, lost func(stream string, n int64)) (protocol.ExecStatusResult, error) {
	p := protocol.ExecStatusParams{ID: id, Encoding: protocol.EncodingBase64, WaitSeconds: FollowWait}
	for {
		r, err := c.ExecStatus(ctx, p)
		if err != nil {
			return r, err
		}
		for _, s := range []struct {
			name string
			st   protocol.Stream
			w    io.Writer
			off  *int64
		}{{"stdout", r.Stdout, stdout, &p.StdoutOffset}, {"stderr", r.Stderr, stderr, &p.StderrOffset}} {
			if s.st.Lost > 0 && lost != nil {
				lost(s.name, s.st.Lost)
			}
			b, err := base64.StdEncoding.DecodeString(s.st.Data)
			if err != nil {
				return r, fmt.Errorf("exec_status %d: %s: %w", id, s.name, err)
			}
			if len(b) > 0 && s.w != nil {
				if _, err := s.w.Write(b); err != nil {
					return r, err
				}
			}
			*s.off = s.st.NextOffset
		}
		if r.Complete {
			return r, nil
		}
	}
}

// FileStat calls file_stat.
func (c *Client) FileStat(ctx context.Context, path string, withSHA256 bool) (protocol.FileStatResult, error) {
	var r protocol.FileStatResult
	return r, c.Call(ctx, protocol.MethodFileStat, protocol.FileStatParams{Path: path, SHA256: withSHA256}, &r)
}

// ReadChunk calls file_read for length bytes from offset, in base64, and
// returns the decoded bytes with the chunk's result.
func (c *Client) ReadChunk(ctx context.Context, path string, offset, length int64) ([]byte, protocol.FileReadChunkResult, error) {
	var r protocol.FileReadChunkResult
	err := c.Call(ctx, protocol.MethodFileRead, protocol.FileReadParams{Path: path, Encoding: protocol.EncodingBase64, Offset: &offset, Length: &length}, &r)
	if err != nil {
		return nil, r, err
	}
	b, err := base64.StdEncoding.DecodeString(r.Content)
	if err != nil {
		return nil, r, fmt.Errorf("file_read %s at %d: decode base64 content: %w", path, offset, err)
	}
	return b, r, nil
}

// WriteChunk calls file_write for one chunk of an upload (p.Offset set).
func (c *Client) WriteChunk(ctx context.Context, p protocol.FileWriteParams) (protocol.FileWriteChunkResult, error) {
	var r protocol.FileWriteChunkResult
	return r, c.Call(ctx, protocol.MethodFileWrite, p, &r)
}

// DefaultChunkSize is the transfer chunk of Download and Upload when none
// is given: under the agent's default max_file_size_bytes (10 MiB).
const DefaultChunkSize = 4 << 20

// Progress is told the bytes done and the total (-1 when unknown).
type Progress func(done, total int64)

// Download and Upload shrink their chunk to the agent's max_file_size_bytes
// when the agent refuses a larger one.

// ErrChecksum is wrapped by Download when the file's sha256, as the agent
// computes it, differs from the bytes received.
var ErrChecksum = errors.New("sha256 mismatch")

// Download copies the guest file path to w in chunks of chunk bytes (0:
// DefaultChunkSize), then compares the sha256 of what it received with the
// one the agent computes (file_stat) and returns it (hex).
func (c *Client) Download(ctx context.Context, path string, w io.Writer, chunk int64, progress Progress) (int64, string, error) {
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	st, err := c.FileStat(ctx, path, false)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	var off int64
	for {
		b, r, err := c.ReadChunk(ctx, path, off, chunk)
		if m, ok := agentMaxFileSize(err); ok && m > 0 && m < chunk {
			chunk = m // the agent's max_file_size_bytes is smaller
			continue
		}
		if err != nil {
			return off, "", err
		}
		if _, err := w.Write(b); err != nil {
			return off, "", err
		}
		h.Write(b)
		off += int64(len(b))
		if progress != nil {
			progress(off, max(st.SizeBytes, r.FileSize))
		}
		if r.EOF || len(b) == 0 {
			break
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	st, err = c.FileStat(ctx, path, true)
	if err != nil {
		return off, sum, err
	}
	if st.SHA256 != sum {
		return off, sum, fmt.Errorf("download %s: %w: received %s, the file now has %s (it changed during the transfer?)", path, ErrChecksum, sum, st.SHA256)
	}
	return off, sum, nil
}

// UploadOptions are Upload's optional settings.
type UploadOptions struct {
	Chunk       int64  // 0: DefaultChunkSize
	Permissions string // octal; "": the old file's mode, or 0644
	CreateDirs  bool
	// Size is r's length if known (-1 or 0 unknown), for progress only.
	Size     int64
	Progress Progress
}

// Upload writes r to the guest file path in chunks and commits it with its
// size and sha256, which the agent verifies before it replaces the file:
// the file at path changes at once and only when complete. A failure
// aborts the upload (its temporary file is removed). It returns the size
// and the sha256 (hex).
func (c *Client) Upload(ctx context.Context, path string, r io.Reader, o UploadOptions) (int64, string, error) {
	if o.Chunk <= 0 {
		o.Chunk = DefaultChunkSize
	}
	h := sha256.New()
	var off int64
	id := ""
	abort := func(err error) (int64, string, error) {
		if id != "" {
			_, _ = c.WriteChunk(context.WithoutCancel(ctx), protocol.FileWriteParams{Path: path, UploadID: id, Abort: true})
		}
		return off, "", err
	}
	var pend []byte // read, not yet sent
	eof := false
	for {
		// Hold more than a chunk (or the end), so the last chunk is known
		// and carries the commit.
		for !eof && int64(len(pend)) <= o.Chunk {
			b := make([]byte, o.Chunk+1-int64(len(pend)))
			n, err := io.ReadFull(r, b)
			pend = append(pend, b[:n]...)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				eof = true
			} else if err != nil {
				return abort(err)
			}
		}
		n := min(int64(len(pend)), o.Chunk)
		cur := pend[:n]
		last := eof && n == int64(len(pend))
		start := off
		p := protocol.FileWriteParams{
			Path: path, Content: base64.StdEncoding.EncodeToString(cur), Encoding: protocol.EncodingBase64,
			Offset: &start, UploadID: id, Permissions: o.Permissions, CreateDirs: o.CreateDirs && id == "",
		}
		if last {
			size := off + n
			p.Commit, p.SizeBytes, p.SHA256 = true, &size, sumWith(h, cur)
		}
		res, err := c.WriteChunk(ctx, p)
		if m, ok := agentMaxFileSize(err); ok && m > 0 && m < o.Chunk {
			o.Chunk = m // the agent's max_file_size_bytes is smaller: resend in its size
			continue
		}
		if err != nil {
			return abort(err)
		}
		h.Write(cur)
		id = res.UploadID
		off += n
		pend = pend[n:]
		if o.Progress != nil {
			total := o.Size
			if total <= 0 {
				total = -1
			}
			o.Progress(off, total)
		}
		if last {
			if !res.Committed {
				return abort(fmt.Errorf("upload %s: the agent did not commit", path))
			}
			return off, res.SHA256, nil
		}
	}
}

// sumWith returns the hex sha256 of what h has seen followed by b, leaving
// h unchanged.
func sumWith(h hash.Hash, b []byte) string {
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	h2 := sha256.New()
	if err == nil {
		err = h2.(encoding.BinaryUnmarshaler).UnmarshalBinary(st)
	}
	if err != nil {
		panic("sha256 state: " + err.Error()) // crypto/sha256 always supports it
	}
	h2.Write(b)
	return hex.EncodeToString(h2.Sum(nil))
}

// maxSizeRe finds the agent's max_file_size_bytes in its refusal of a
// chunk too large.
var maxSizeRe = regexp.MustCompile(`(?:over|larger than) max_file_size_bytes \((\d+)\)`)

// agentMaxFileSize returns the max_file_size_bytes an agent error names.
func agentMaxFileSize(err error) (int64, bool) {
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		return 0, false
	}
	m := maxSizeRe.FindStringSubmatch(perr.Message)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	return n, err == nil
}

// FsfreezeStatus calls fsfreeze_status.
func (c *Client) FsfreezeStatus(ctx context.Context) (protocol.FsfreezeStatus, error) {
	var r protocol.FsfreezeStatus
	return r, c.Call(ctx, protocol.MethodFsfreezeStatus, nil, &r)
}

// FsfreezeFreeze calls fsfreeze_freeze; no mount points means every
// freezable file system.
func (c *Client) FsfreezeFreeze(ctx context.Context, mountpoints ...string) (protocol.FsfreezeFreezeResult, error) {
	var r protocol.FsfreezeFreezeResult
	return r, c.Call(ctx, protocol.MethodFsfreezeFreeze, protocol.FsfreezeFreezeParams{Mountpoints: mountpoints}, &r)
}

// FsfreezeThaw calls fsfreeze_thaw.
func (c *Client) FsfreezeThaw(ctx context.Context) (protocol.FsfreezeThawResult, error) {
	var r protocol.FsfreezeThawResult
	return r, c.Call(ctx, protocol.MethodFsfreezeThaw, nil, &r)
}

// GetTime calls get_time.
func (c *Client) GetTime(ctx context.Context) (protocol.TimeInfo, error) {
	var r protocol.TimeInfo
	return r, c.Call(ctx, protocol.MethodGetTime, nil, &r)
}

// SetTime calls set_time: to timeNs, or from the guest's RTC when nil.
func (c *Client) SetTime(ctx context.Context, timeNs *int64) (protocol.SetTimeResult, error) {
	var r protocol.SetTimeResult
	return r, c.Call(ctx, protocol.MethodSetTime, protocol.SetTimeParams{TimeNs: timeNs}, &r)
}

// Users calls get_users.
func (c *Client) Users(ctx context.Context) (protocol.Users, error) {
	var r protocol.Users
	return r, c.Call(ctx, protocol.MethodGetUsers, nil, &r)
}

// Timezone calls get_timezone.
func (c *Client) Timezone(ctx context.Context) (protocol.Timezone, error) {
	var r protocol.Timezone
	return r, c.Call(ctx, protocol.MethodGetTimezone, nil, &r)
}

// Load calls get_load.
func (c *Client) Load(ctx context.Context) (protocol.LoadAverage, error) {
	var r protocol.LoadAverage
	return r, c.Call(ctx, protocol.MethodGetLoad, nil, &r)
}

// MemoryInfo calls get_memory_info.
func (c *Client) MemoryInfo(ctx context.Context) (protocol.MemoryInfo, error) {
	var r protocol.MemoryInfo
	return r, c.Call(ctx, protocol.MethodGetMemoryInfo, nil, &r)
}

// CPUStats calls get_cpu_stats.
func (c *Client) CPUStats(ctx context.Context) (protocol.CPUStatsResult, error) {
	var r protocol.CPUStatsResult
	return r, c.Call(ctx, protocol.MethodGetCPUStats, nil, &r)
}

// DiskStats calls get_disk_stats.
func (c *Client) DiskStats(ctx context.Context) (protocol.DiskStatsResult, error) {
	var r protocol.DiskStatsResult
	return r, c.Call(ctx, protocol.MethodGetDiskStats, nil, &r)
}

// SSHKeys calls ssh_get_authorized_keys.
func (c *Client) SSHKeys(ctx context.Context, username string) ([]string, error) {
	var r protocol.SSHAuthorizedKeys
	err := c.Call(ctx, protocol.MethodSSHGetAuthorizedKeys, protocol.SSHKeysParams{Username: username}, &r)
	return r.Keys, err
}

// SSHAddKeys calls ssh_add_authorized_keys (reset: replace every key) and
// returns the user's keys after the change.
func (c *Client) SSHAddKeys(ctx context.Context, username string, keys []string, reset bool) ([]string, error) {
	var r protocol.SSHAuthorizedKeys
	err := c.Call(ctx, protocol.MethodSSHAddAuthorizedKeys, protocol.SSHKeysParams{Username: username, Keys: keys, Reset: reset}, &r)
	return r.Keys, err
}

// SSHRemoveKeys calls ssh_remove_authorized_keys and returns the user's
// keys after the change.
func (c *Client) SSHRemoveKeys(ctx context.Context, username string, keys []string) ([]string, error) {
	var r protocol.SSHAuthorizedKeys
	err := c.Call(ctx, protocol.MethodSSHRemoveAuthorizedKeys, protocol.SSHKeysParams{Username: username, Keys: keys}, &r)
	return r.Keys, err
}

// SetUserPassword calls set_user_password; crypted: password is a crypt(3)
// hash.
func (c *Client) SetUserPassword(ctx context.Context, username, password string, crypted bool) error {
	return c.Call(ctx, protocol.MethodSetUserPassword, protocol.SetUserPasswordParams{Username: username, Password: password, Crypted: crypted}, nil)
}
