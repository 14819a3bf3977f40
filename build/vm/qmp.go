package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sync"
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
	conn, dec, enc, err := m.openQMP()
	if err != nil {
		return fmt.Errorf("vm: qmp %s: %w", command, err)
	}
	defer conn.Close()
	if err := qmpExchange(dec, enc, command, args); err != nil {
		return fmt.Errorf("vm: qmp %s: %w", command, err)
	}
	return nil
}

// openQMP connects to the machine's QMP socket, reads QEMU's greeting and
// leaves capabilities negotiation mode, with qmpTimeout as the connection's
// deadline.
func (m *Machine) openQMP() (net.Conn, *json.Decoder, *json.Encoder, error) {
	conn, err := m.dialQMP()
	if err != nil {
		return nil, nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(qmpTimeout))
	dec := json.NewDecoder(bufio.NewReader(conn))
	enc := json.NewEncoder(conn)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("read greeting from %s: %v", m.qmpPath, err)
	}
	if err := qmpExchange(dec, enc, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("qmp_capabilities: %w", err)
	}
	return conn, dec, enc, nil
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

// agentChardevID is the QEMU character device behind the agent's port.
const agentChardevID = "agent"

// agentPortID is the QEMU device id of the agent's virtio-serial port: QEMU
// names it in the VSERPORT_CHANGE event only when the device has an id.
const agentPortID = "agentport"

// PortOpen is when the guest opened the agent's port.
type PortOpen struct {
	At time.Time
	// Already: the port was open when the watch began, and At is that
	// moment rather than the guest's.
	Already bool
}

// WatchAgentPort watches, on a QMP connection, for the guest to open the
// agent's virtio-serial port (QEMU's VSERPORT_CHANGE event; the agent opens
// it when it starts) and returns a channel that receives that moment at
// most once. The watch holds QEMU's one QMP connection: other QMP commands
// wait until stop is called, which ends the watch (call it in any case).
func (m *Machine) WatchAgentPort() (<-chan PortOpen, func(), error) {
	if m.cfg.AgentSocket == "" {
		return nil, nil, fmt.Errorf("vm: watch the agent port: the machine has no agent port")
	}
	m.qmpMu.Lock()
	fail := func(err error) (<-chan PortOpen, func(), error) {
		m.qmpMu.Unlock()
		return nil, nil, fmt.Errorf("vm: watch the agent port: %w", err)
	}
	conn, dec, enc, err := m.openQMP()
	if err != nil {
		return fail(err)
	}
	// The port may have opened before the watch: query-chardev says so
	// (frontend-open); an event that comes first is read first.
	if err := enc.Encode(map[string]any{"execute": "query-chardev"}); err != nil {
		conn.Close()
		return fail(fmt.Errorf("send query-chardev: %w", err))
	}
	_ = conn.SetDeadline(time.Time{})
	opened := make(chan PortOpen, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			var msg struct {
				Event string `json:"event"`
				Data  struct {
					ID   string `json:"id"`
					Open bool   `json:"open"`
				} `json:"data"`
				Return json.RawMessage `json:"return"`
			}
			if dec.Decode(&msg) != nil {
				return
			}
			switch {
			case msg.Event == "VSERPORT_CHANGE" && msg.Data.ID == agentPortID && msg.Data.Open:
				opened <- PortOpen{At: time.Now()}
				return
			case msg.Return != nil:
				var devs []struct {
					Label string `json:"label"`
					Open  bool   `json:"frontend-open"`
				}
				_ = json.Unmarshal(msg.Return, &devs)
				for _, d := range devs {
					if d.Label == agentChardevID && d.Open {
						opened <- PortOpen{At: time.Now(), Already: true}
						return
					}
				}
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			conn.Close()
			<-finished
			m.qmpMu.Unlock()
		})
	}
	return opened, stop, nil
}
