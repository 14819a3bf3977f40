package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/windows"
)

// ListenScheme is the scheme of --listen addresses: npipe:\\.\pipe\NAME.
const ListenScheme = "npipe"

// pipeSDDL lets only Administrators (BA) and LocalSystem (SY) open the
// pipe, with full access; P protects the list from inherited entries.
const pipeSDDL = "D:P(A;;GA;;;BA)(A;;GA;;;SY)"

// Listen serves clients on the named pipe path (\\.\pipe\NAME), several at
// once, each connection being one srv.ServeConn session, until ctx is
// cancelled. Whoever can connect commands the agent (as SYSTEM), so the
// pipe admits only Administrators and SYSTEM; a pipe of that name that
// exists already (another agent) makes Listen fail.
func Listen(ctx context.Context, path string, srv Server, log *slog.Logger) error {
	if !isPipePath(path) {
		return fmt.Errorf("listen on %s: want a named pipe \\\\.\\pipe\\NAME", path)
	}
	ln, err := ListenPipe(path)
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return fmt.Errorf("listen on %s: %w (another process owns this pipe name)", path, err)
		}
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if log != nil {
		log.Info("Listening on named pipe", "path", path)
	}
	return serveListener(ctx, ln, srv, log)
}
