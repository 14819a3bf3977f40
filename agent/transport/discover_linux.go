package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// DefaultDevice is the port's path where udev names virtio-serial ports.
const DefaultDevice = "/dev/virtio-ports/" + protocol.PortName

// fallbackPort is the first port of the first virtio-serial device, used
// when neither udev nor sysfs tell which port is ours.
const fallbackPort = "vport0p1"

// ErrNoPort is wrapped by FindPort's error when no port was found.
var ErrNoPort = errors.New("virtio-serial port not found")

// FindPort locates the agent's virtio-serial port under devRoot ("/dev")
// and sysRoot ("/sys"):
//   - devRoot/virtio-ports/org.kvmmanager.agent.0 (the udev symlink);
//   - else devRoot/vportNpM whose sysRoot/class/virtio-ports/vportNpM/name is
//     org.kvmmanager.agent.0 (no udev, e.g. an initramfs with mdev);
//   - else devRoot/vport0p1, unless sysfs names it as another port (it may
//     be qemu-ga's, which must not be taken).
func FindPort(devRoot, sysRoot string) (string, error) {
	return FindPortNamed(protocol.PortName, devRoot, sysRoot)
}

// FindPortNamed locates the virtio-serial port called name as FindPort
// does; the vport0p1 fallback applies to the agent's own port only (another
// port, e.g. org.qemu.guest_agent.0, is found by its name or not at all).
func FindPortNamed(name, devRoot, sysRoot string) (string, error) {
	byName := filepath.Join(devRoot, "virtio-ports", name)
	if exists(byName) {
		return byName, nil
	}
	classDir := filepath.Join(sysRoot, "class", "virtio-ports")
	entries, err := os.ReadDir(classDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("find port: read %s: %w", classDir, err)
	}
	for _, e := range entries {
		if portName(classDir, e.Name()) == name {
			if dev := filepath.Join(devRoot, e.Name()); exists(dev) {
				return dev, nil
			}
		}
	}
	if name != protocol.PortName {
		return "", fmt.Errorf("find port: looked for %s and a port named %s in %s: %w", byName, name, classDir, ErrNoPort)
	}
	if dev := filepath.Join(devRoot, fallbackPort); exists(dev) && portName(classDir, fallbackPort) == "" {
		return dev, nil
	}
	return "", fmt.Errorf("find port: looked for %s, a port named %s in %s and %s: %w",
		byName, name, classDir, filepath.Join(devRoot, fallbackPort), ErrNoPort)
}

// portName returns the name sysfs gives the port, or "" if none.
func portName(classDir, port string) string {
	b, err := os.ReadFile(filepath.Join(classDir, port, "name"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
