package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmpTimeout bounds one QMP exchange.
const qmpTimeout = 30 * time.Second

// ChangeCDROM replaces the medium in the CD-ROM drive with the ISO image at
// isoPath (QMP blockdev-change-medium). The tray is forced open if the guest
// has locked it; the guest sees a media change.
func (m *Machine) ChangeCDROM(isoPath string) error {
	return m.qmp("blockdev-change-medium", map[string]any{
		"id":             "cdrom",
		"filename":       isoPath,
		"format":         "raw",
		"read-only-mode": "read-only",
		"force":          true,
	})
}

// qmp runs one QMP command on a fresh connection to the machine's QMP
// socket and returns an error if QEMU answers with one.
func (m *Machine) qmp(command string, args any) error {
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	select {
	case <-m.done:
		return fmt.Errorf("vm: qmp %s: qemu has exited", command)
	default:
	}
	conn, err := m.dialQMP()
	if err != nil {
		return fmt.Errorf("vm: qmp %s: %w", command, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(qmpTimeout))
	dec := json.NewDecoder(bufio.NewReader(conn))
	enc := json.NewEncoder(conn)

	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("vm: qmp %s: read greeting from %s: %v", command, m.qmpPath, err)
	}
	if err := qmpExchange(dec, enc, "qmp_capabilities", nil); err != nil {
		return fmt.Errorf("vm: qmp_capabilities: %w", err)
	}
	if err := qmpExchange(dec, enc, command, args); err != nil {
		return fmt.Errorf("vm: qmp %s: %w", command, err)
	}
	return nil
}

// qmpExchange sends one command and reads until its reply, skipping the
// asynchronous events QEMU may send in between.
func qmpExchange(dec *json.Decoder, enc *json.Encoder, command string, args any) error {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	if err := enc.Encode(req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for {
		var reply struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := dec.Decode(&reply); err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		switch {
		case reply.Event != "":
			continue
		case reply.Error != nil:
			return fmt.Errorf("%s: %s", reply.Error.Class, reply.Error.Desc)
		default:
			return nil
		}
	}
}

// dialQMP connects to the QMP socket, waiting for QEMU to create it.
func (m *Machine) dialQMP() (net.Conn, error) {
	deadline := time.Now().Add(qmpTimeout)
	for {
		conn, err := net.DialTimeout("unix", m.qmpPath, qmpTimeout)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dial %s: %w", m.qmpPath, err)
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("dial %s: qemu has exited", m.qmpPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
