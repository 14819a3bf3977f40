package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// serveListener serves each connection ln accepts as one session, several
// at once, until ctx is cancelled; then it closes ln and lets the sessions
// drain.
func serveListener(ctx context.Context, ln net.Listener, srv Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer wg.Wait()
	bo := backoff{min: 5 * time.Millisecond, max: time.Second}
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// EMFILE and the like: wait and go on.
			log.Warn("accept failed", "err", err)
			sleep(ctx, bo.next())
			continue
		}
		bo.reset()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			log.Debug("client connected")
			if err := srv.ServeConn(ctx, conn); err != nil {
				log.Debug("client session ended", "err", err)
			}
		}()
	}
}
