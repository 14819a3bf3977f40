package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Ping calls ping.
func (c *Client) Ping(ctx context.Context) (protocol.PingResult, error) {
	var r protocol.PingResult
	return r, c.Call(ctx, protocol.MethodPing, nil, &r)
}

// AgentInfo calls get_agent_info.
func (c *Client) AgentInfo(ctx context.Context) (protocol.AgentInfo, error) {
	var r protocol.AgentInfo
	return r, c.Call(ctx, protocol.MethodGetAgentInfo, nil, &r)
}

// SystemInfo calls get_system_info.
func (c *Client) SystemInfo(ctx context.Context) (protocol.SystemInfo, error) {
	var r protocol.SystemInfo
	return r, c.Call(ctx, protocol.MethodGetSystemInfo, nil, &r)
}

// NetworkInfo calls get_network_info.
func (c *Client) NetworkInfo(ctx context.Context) (protocol.NetworkInfo, error) {
	var r protocol.NetworkInfo
	return r, c.Call(ctx, protocol.MethodGetNetworkInfo, nil, &r)
}

// DiskUsage calls get_disk_usage.
func (c *Client) DiskUsage(ctx context.Context) (protocol.DiskUsage, error) {
	var r protocol.DiskUsage
	return r, c.Call(ctx, protocol.MethodGetDiskUsage, nil, &r)
}

// DefaultExecTimeout is the agent's default exec_command timeout.
const DefaultExecTimeout = 30 * time.Second

// Exec calls exec_command. When ctx has no deadline, the call may last the
// command's timeout (p.TimeoutSeconds, else DefaultExecTimeout) plus the
// call timeout. A non-zero exit code is not an error; a command killed on
// its timeout is a *protocol.Error with code CodeTimeout whose Data holds
// the ExecResult collected so far (see ExecErrorOutput).
func (c *Client) Exec(ctx context.Context, p protocol.ExecParams) (protocol.ExecResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		d := DefaultExecTimeout
		if p.TimeoutSeconds != nil && *p.TimeoutSeconds > 0 {
			d = time.Duration(*p.TimeoutSeconds) * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d+c.opts.callTimeout)
		defer cancel()
	}
	var r protocol.ExecResult
	return r, c.Call(ctx, protocol.MethodExecCommand, p, &r)
}

// ExecErrorOutput returns the output carried by an exec_command error
// (a timeout carries what the command printed before it was killed).
func ExecErrorOutput(err error) (protocol.ExecResult, bool) {
	var perr *protocol.Error
	if !errors.As(err, &perr) || len(perr.Data) == 0 {
		return protocol.ExecResult{}, false
	}
	var r protocol.ExecResult
	if json.Unmarshal(perr.Data, &r) != nil {
		return protocol.ExecResult{}, false
	}
	return r, true
}

// ReadFile calls file_read with encoding (protocol.EncodingUTF8,
// protocol.EncodingBase64, or "" for the agent's default, utf8). The content
// is returned as the agent sent it; see ReadFileBytes for raw bytes.
func (c *Client) ReadFile(ctx context.Context, path, encoding string) (protocol.FileReadResult, error) {
	var r protocol.FileReadResult
	return r, c.Call(ctx, protocol.MethodFileRead, protocol.FileReadParams{Path: path, Encoding: encoding}, &r)
}

// ReadFileBytes reads path in base64 and returns the decoded bytes, so
// binary files arrive intact.
func (c *Client) ReadFileBytes(ctx context.Context, path string) ([]byte, error) {
	r, err := c.ReadFile(ctx, path, protocol.EncodingBase64)
	if err != nil {
		return nil, err
	}
	if r.Encoding != "" && r.Encoding != protocol.EncodingBase64 {
		return nil, fmt.Errorf("file_read %s: asked for base64, agent answered %q", path, r.Encoding)
	}
	b, err := base64.StdEncoding.DecodeString(r.Content)
	if err != nil {
		return nil, fmt.Errorf("file_read %s: decode base64 content: %w", path, err)
	}
	return b, nil
}

// WriteFile calls file_write.
func (c *Client) WriteFile(ctx context.Context, p protocol.FileWriteParams) (protocol.FileWriteResult, error) {
	var r protocol.FileWriteResult
	return r, c.Call(ctx, protocol.MethodFileWrite, p, &r)
}

// WriteFileBytes writes data to path, sent in base64. permissions is an
// octal string such as "0644", or "" for the agent's default.
func (c *Client) WriteFileBytes(ctx context.Context, path string, data []byte, permissions string) (protocol.FileWriteResult, error) {
	return c.WriteFile(ctx, protocol.FileWriteParams{
		Path:        path,
		Content:     base64.StdEncoding.EncodeToString(data),
		Encoding:    protocol.EncodingBase64,
		Permissions: permissions,
	})
}

// Shutdown calls shutdown. The agent replies before it acts.
func (c *Client) Shutdown(ctx context.Context, p protocol.PowerParams) (protocol.PowerResult, error) {
	var r protocol.PowerResult
	return r, c.Call(ctx, protocol.MethodShutdown, p, &r)
}

// Reboot calls reboot. The agent replies before it acts.
func (c *Client) Reboot(ctx context.Context, p protocol.PowerParams) (protocol.PowerResult, error) {
	var r protocol.PowerResult
	return r, c.Call(ctx, protocol.MethodReboot, p, &r)
}

// Sync calls sync with id and checks that the agent returns it. The client
// resynchronises by itself after a timeout; this is the bare method.
func (c *Client) Sync(ctx context.Context, id int64) error {
	var got int64
	if err := c.Call(ctx, protocol.MethodSync, protocol.SyncParams{ID: id}, &got); err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("sync: sent %d, agent returned %d", id, got)
	}
	return nil
}

// WaitReady pings until the agent answers or ctx ends. With a QEMU chardev
// socket the connection exists before the guest agent runs; this is how a
// host waits for the guest. Any answer, even an error, means ready.
func (c *Client) WaitReady(ctx context.Context) error {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, c.opts.readyAttempt)
		_, err := c.Ping(actx)
		cancel()
		var perr *protocol.Error
		if err == nil || errors.As(err, &perr) {
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		last = err
		t := time.NewTimer(c.opts.readyInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("agent at %s did not answer: %w (last attempt: %v)", c.path, ctx.Err(), last)
		}
	}
}
