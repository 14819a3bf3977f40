package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// qgaCodec speaks the QEMU guest agent's QMP dialect:
// {"execute": NAME, "arguments": {...}, "id": N} → {"return": ...} or
// {"error": {"class": ..., "desc": ...}}, one message per line.
type qgaCodec struct{}

func (qgaCodec) appendRequest(dst []byte, id uint64, method string, params any) ([]byte, error) {
	dst = append(dst, `{"execute":`...)
	dst = strconv.AppendQuote(dst, method)
	if params != nil {
		dst = append(dst, `,"arguments":`...)
		var err error
		if dst, err = appendParams(dst, params, json.Marshal); err != nil {
			return dst, err
		}
	}
	dst = append(dst, `,"id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	return append(dst, "}\n"...), nil
}

// qgaError is a qemu-ga error reply.
type qgaError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qgaError) Error() string { return fmt.Sprintf("qemu-ga %s: %s", e.Class, e.Desc) }

type qgaResponse struct {
	Return json.RawMessage `json:"return"`
	Error  *qgaError       `json:"error"`
	ID     json.RawMessage `json:"id"`
}

func (qgaCodec) parseResponse(line []byte, result any) (uint64, error) {
	var r qgaResponse
	if err := json.Unmarshal(line, &r); err != nil {
		return 0, fmt.Errorf("decode reply %.80q: %w", line, err)
	}
	var id uint64
	if r.ID != nil {
		var err error
		if id, err = strconv.ParseUint(string(r.ID), 10, 64); err != nil {
			return 0, fmt.Errorf("reply %.80q: id is not a request id", line)
		}
	}
	if r.Error != nil {
		return id, r.Error
	}
	if r.Return == nil {
		return id, fmt.Errorf("reply %.80q: neither return nor error", line)
	}
	if result != nil {
		if err := json.Unmarshal(r.Return, result); err != nil {
			return id, fmt.Errorf("decode return: %w", err)
		}
	}
	return id, nil
}

// appendSync sends guest-sync-delimited, whose reply qemu-ga prefixes with
// 0xFF. Sending a 0xFF byte ourselves would make qemu-ga 7.2 answer with a
// parse error on a unix socket, so the request alone is the handshake.
func (c qgaCodec) appendSync(dst []byte, token uint64) []byte {
	dst, _ = c.appendRequest(dst, 0, "guest-sync-delimited", map[string]uint64{"id": token})
	return dst
}

func (c qgaCodec) parseSync(line []byte, token uint64) error {
	var got uint64
	if _, err := c.parseResponse(line, &got); err != nil {
		return err
	}
	if got != token {
		return fmt.Errorf("guest-sync-delimited returned %d, want %d", got, token)
	}
	return nil
}

// qgaChunk is the chunk size of guest-file-read and guest-file-write, the
// size hosts commonly use (qemu-ga's own maximum is 48 MB).
const qgaChunk = 4 << 20

// qgaExecPollInterval is the wait between guest-exec-status polls after the
// first one, which is sent immediately after guest-exec returns. 1 ms is
// faster than any real host polls (libvirt and Proxmox use tens to hundreds
// of milliseconds), so it favours qemu-ga.
const qgaExecPollInterval = time.Millisecond

// qgaAgent runs the workloads against qemu-ga.
type qgaAgent struct {
	c            *conn
	execs, polls int // guest-exec-status polls per command, reported
}

func (a qgaAgent) ping() error { return a.c.call("guest-ping", nil, nil) }

func (a qgaAgent) pingPipeline(n, window int) error {
	return a.c.pipeline(n, window, "guest-ping")
}

type qgaOSInfo struct {
	KernelRelease string `json:"kernel-release"`
	KernelVersion string `json:"kernel-version"`
	Machine       string `json:"machine"`
	ID            string `json:"id"`
	Name          string `json:"name"`
	PrettyName    string `json:"pretty-name"`
	Version       string `json:"version"`
	VersionID     string `json:"version-id"`
}

func (a qgaAgent) systemInfo() error {
	var r qgaOSInfo
	if err := a.c.call("guest-get-osinfo", nil, &r); err != nil {
		return err
	}
	if r.KernelRelease == "" {
		return fmt.Errorf("guest-get-osinfo: empty kernel-release")
	}
	return nil
}

type qgaInterface struct {
	Name            string `json:"name"`
	HardwareAddress string `json:"hardware-address"`
	IPAddresses     []struct {
		Type    string `json:"ip-address-type"`
		Address string `json:"ip-address"`
		Prefix  int    `json:"prefix"`
	} `json:"ip-addresses"`
	Statistics map[string]uint64 `json:"statistics"`
}

func (a qgaAgent) networkInfo() error {
	var r []qgaInterface
	if err := a.c.call("guest-network-get-interfaces", nil, &r); err != nil {
		return err
	}
	if len(r) == 0 {
		return fmt.Errorf("guest-network-get-interfaces: no interfaces")
	}
	return nil
}

type qgaFilesystem struct {
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	Type       string `json:"type"`
	TotalBytes uint64 `json:"total-bytes"`
	UsedBytes  uint64 `json:"used-bytes"`
	Disk       []struct {
		Dev     string `json:"dev"`
		BusType string `json:"bus-type"`
	} `json:"disk"`
}

func (a qgaAgent) diskUsage() error {
	var r []qgaFilesystem
	if err := a.c.call("guest-get-fsinfo", nil, &r); err != nil {
		return err
	}
	if len(r) == 0 {
		return fmt.Errorf("guest-get-fsinfo: no filesystems")
	}
	return nil
}

type qgaExecStatus struct {
	Exited   bool   `json:"exited"`
	ExitCode *int   `json:"exitcode"`
	Signal   *int   `json:"signal"`
	OutData  string `json:"out-data"`
	ErrData  string `json:"err-data"`
}

func (a *qgaAgent) execTrue() error {
	a.execs++
	var started struct {
		PID int `json:"pid"`
	}
	args := map[string]any{"path": "/bin/true", "capture-output": true}
	if err := a.c.call("guest-exec", args, &started); err != nil {
		return err
	}
	status := map[string]int{"pid": started.PID}
	for polls := 0; ; polls++ {
		if polls > 0 {
			time.Sleep(qgaExecPollInterval)
		}
		a.polls++
		var st qgaExecStatus
		if err := a.c.call("guest-exec-status", status, &st); err != nil {
			return err
		}
		if !st.Exited {
			continue
		}
		if st.ExitCode == nil || *st.ExitCode != 0 {
			return fmt.Errorf("guest-exec /bin/true: did not exit 0 (%+v)", st)
		}
		return nil
	}
}

func (a qgaAgent) readFile(path string) ([]byte, error) {
	var handle int64
	if err := a.c.call("guest-file-open", map[string]string{"path": path, "mode": "r"}, &handle); err != nil {
		return nil, err
	}
	var data []byte
	args := map[string]int64{"handle": handle, "count": qgaChunk}
	for {
		var r struct {
			Count int  `json:"count"`
			EOF   bool `json:"eof"`
		}
		n := len(data)
		var err error
		data, err = a.c.callBig("guest-file-read", args, "buf-b64", &r, data)
		if err != nil {
			a.c.call("guest-file-close", map[string]int64{"handle": handle}, nil)
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(data)-n != r.Count {
			return nil, fmt.Errorf("guest-file-read %s: %d bytes, count says %d", path, len(data)-n, r.Count)
		}
		if r.EOF || r.Count == 0 {
			break
		}
	}
	if err := a.c.call("guest-file-close", map[string]int64{"handle": handle}, nil); err != nil {
		return nil, err
	}
	return data, nil
}

func (a qgaAgent) writeFile(path string, data []byte) error {
	var handle int64
	if err := a.c.call("guest-file-open", map[string]string{"path": path, "mode": "w"}, &handle); err != nil {
		return err
	}
	for off := 0; off < len(data); {
		chunk := data[off:min(off+qgaChunk, len(data))]
		var r struct {
			Count int `json:"count"`
		}
		args := rawParams(func(dst []byte) []byte {
			dst = append(dst, `{"handle":`...)
			dst = strconv.AppendInt(dst, handle, 10)
			dst = append(dst, ',')
			dst = appendB64Member(dst, "buf-b64", chunk)
			return append(dst, '}')
		})
		if err := a.c.call("guest-file-write", args, &r); err != nil {
			a.c.call("guest-file-close", map[string]int64{"handle": handle}, nil)
			return err
		}
		if r.Count <= 0 {
			return fmt.Errorf("guest-file-write %s: wrote %d bytes", path, r.Count)
		}
		off += r.Count
	}
	return a.c.call("guest-file-close", map[string]int64{"handle": handle}, nil)
}
