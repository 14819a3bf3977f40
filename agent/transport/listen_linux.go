package transport

import (
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// umaskMu serialises umask changes made by this package.
var umaskMu sync.Mutex

// listenPrivate creates a unix socket that only its owner may connect to:
// the umask is tightened while bind(2) creates the socket file, so there is
// no moment at which it has looser permissions.
func listenPrivate(path string) (*net.UnixListener, error) {
	umaskMu.Lock()
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	umaskMu.Unlock()
	return ln, err
}
