package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ListenScheme is the scheme of --listen addresses: unix:PATH.
const ListenScheme = "unix"

// Listen serves clients on a unix socket at path, several at once, each
// connection being one srv.ServeConn session, until ctx is cancelled; then
// it stops accepting, lets the sessions drain and removes the socket.
//
// Whoever can connect commands the agent (as root), so the socket is created
// with mode 0600. Listen refuses to start when path exists and is not a
// socket, or is the socket of a live listener; a stale socket is replaced.
func Listen(ctx context.Context, path string, srv Server, log *slog.Logger) error {
	ln, err := listenUnix(path)
	if err != nil {
		return err
	}
	if log != nil {
		log.Info("Listening on unix socket", "path", path)
	}
	return serveListener(ctx, ln, srv, log)
}

// listenUnix creates the listening socket, mode 0600 from the start.
func listenUnix(path string) (*net.UnixListener, error) {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("listen on %s: refusing to replace an existing %s that is not a socket", path, describe(fi))
	case err == nil:
		if c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"}); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: another process is listening on this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen on %s: remove stale socket: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Belt and braces: the umask already made it 0600.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: chmod: %w", path, err)
	}
	return ln, nil
}

func describe(fi fs.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t == 0:
		return "regular file"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	default:
		return "file of type " + t.String()
	}
}

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
