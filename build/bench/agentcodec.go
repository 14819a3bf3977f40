package bench

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// jsonrpcCodec speaks kvmmanager-agent's protocol 1.0: JSON-RPC 2.0, one
// message per line.
type jsonrpcCodec struct{}

func (jsonrpcCodec) appendRequest(dst []byte, id uint64, method string, params any) ([]byte, error) {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"method":`...)
	dst = strconv.AppendQuote(dst, method)
	if params != nil {
		dst = append(dst, `,"params":`...)
		var err error
		if dst, err = appendParams(dst, params, json.Marshal); err != nil {
			return dst, err
		}
	}
	return append(dst, "}\n"...), nil
}

type jsonrpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *protocol.Error `json:"error"`
	ID      json.RawMessage `json:"id"`
}

func (jsonrpcCodec) parseResponse(line []byte, result any) (uint64, error) {
	var r jsonrpcResponse
	if err := json.Unmarshal(line, &r); err != nil {
		return 0, fmt.Errorf("decode reply %.80q: %w", line, err)
	}
	if r.JSONRPC != protocol.JSONRPCVersion {
		return 0, fmt.Errorf("reply %.80q: jsonrpc is not %q", line, protocol.JSONRPCVersion)
	}
	id, err := strconv.ParseUint(string(r.ID), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reply %.80q: id is not a request id", line)
	}
	if r.Error != nil {
		return id, r.Error
	}
	if r.Result == nil {
		return id, fmt.Errorf("reply %.80q: neither result nor error", line)
	}
	if result != nil {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return id, fmt.Errorf("decode result: %w", err)
		}
	}
	return id, nil
}

func (c jsonrpcCodec) appendSync(dst []byte, token uint64) []byte {
	dst = append(dst, protocol.ResyncByte)
	dst, _ = c.appendRequest(dst, 0, protocol.MethodSync, protocol.SyncParams{ID: int64(token)})
	return dst
}

func (c jsonrpcCodec) parseSync(line []byte, token uint64) error {
	var got uint64
	if _, err := c.parseResponse(line, &got); err != nil {
		return err
	}
	if got != token {
		return fmt.Errorf("sync returned %d, want %d", got, token)
	}
	return nil
}

// kvmAgent runs the workloads against kvmmanager-agent (protocol 1.0).
type kvmAgent struct{ c *conn }

func (a kvmAgent) ping() error {
	var r protocol.PingResult
	if err := a.c.call(protocol.MethodPing, nil, &r); err != nil {
		return err
	}
	if !r.Pong {
		return fmt.Errorf("ping: pong is false")
	}
	return nil
}

func (a kvmAgent) pingPipeline(n, window int) error {
	return a.c.pipeline(n, window, protocol.MethodPing)
}

func (a kvmAgent) systemInfo() error {
	var r protocol.SystemInfo
	if err := a.c.call(protocol.MethodGetSystemInfo, nil, &r); err != nil {
		return err
	}
	if r.KernelVersion == "" {
		return fmt.Errorf("get_system_info: empty kernel_version")
	}
	return nil
}

func (a kvmAgent) networkInfo() error {
	var r protocol.NetworkInfo
	if err := a.c.call(protocol.MethodGetNetworkInfo, nil, &r); err != nil {
		return err
	}
	if len(r.Interfaces) == 0 {
		return fmt.Errorf("get_network_info: no interfaces")
	}
	return nil
}

func (a kvmAgent) diskUsage() error {
	var r protocol.DiskUsage
	if err := a.c.call(protocol.MethodGetDiskUsage, nil, &r); err != nil {
		return err
	}
	if len(r.Filesystems) == 0 {
		return fmt.Errorf("get_disk_usage: no filesystems")
	}
	return nil
}

func (a kvmAgent) execTrue() error {
	var r protocol.ExecResult
	if err := a.c.call(protocol.MethodExecCommand, protocol.ExecParams{Command: "/bin/true"}, &r); err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return fmt.Errorf("exec_command /bin/true: exit code %d", r.ExitCode)
	}
	return nil
}

func (a kvmAgent) readFile(path string) ([]byte, error) {
	var r protocol.FileReadResult
	data, err := a.c.callBig(protocol.MethodFileRead, protocol.FileReadParams{Path: path, Encoding: protocol.EncodingBase64}, "content", &r, nil)
	if err != nil {
		return nil, err
	}
	if r.Encoding != protocol.EncodingBase64 {
		return nil, fmt.Errorf("file_read %s: encoding %q, want base64", path, r.Encoding)
	}
	if int64(len(data)) != r.SizeBytes {
		return nil, fmt.Errorf("file_read %s: %d bytes, size_bytes says %d", path, len(data), r.SizeBytes)
	}
	return data, nil
}

func (a kvmAgent) writeFile(path string, data []byte) error {
	var r protocol.FileWriteResult
	params := rawParams(func(dst []byte) []byte {
		dst = append(dst, `{"path":`...)
		dst = strconv.AppendQuote(dst, path)
		dst = append(dst, `,"encoding":"base64",`...)
		dst = appendB64Member(dst, "content", data)
		return append(dst, '}')
	})
	if err := a.c.call(protocol.MethodFileWrite, params, &r); err != nil {
		return err
	}
	if r.BytesWritten != int64(len(data)) {
		return fmt.Errorf("file_write %s: %d bytes written, want %d", path, r.BytesWritten, len(data))
	}
	return nil
}
