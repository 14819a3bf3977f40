// Package transport connects the agent's server to its peers: the
// virtio-serial port org.kvmmanager.agent.0 (found through /dev/virtio-ports
// or sysfs), a unix socket the agent dials when --device names one, and a
// unix socket the agent listens on for development and tests (--listen).
//
// The virtio-serial port needs care: while no host is connected, read()
// returns 0 at once, again and again, and poll() reports POLLIN|POLLHUP, so
// naive code spins; a blocking write waits for a host; a second open fails
// with EBUSY, so the port is opened once and kept. This package waits for a
// host by sleeping until the driver's SIGIO (O_ASYNC, only while no host is
// there) says one came, so an idle agent does not wake; it serves one
// session per host connection and never exits because the port is missing.
package transport

import (
	"context"
	"io"
	"time"
)

// Server serves one connection until it ends; *server.Server implements it.
type Server interface {
	ServeConn(ctx context.Context, rw io.ReadWriter) error
}

// backoff yields growing delays between retries.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

// next returns the delay before the next retry.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// atMax reports whether the delays have reached their cap.
func (b *backoff) atMax() bool { return b.cur == b.max }

// sleep waits for d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
