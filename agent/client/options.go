package client

import (
	"context"
	"log/slog"
	"net"
	"time"
)

// Option configures a Client.
type Option func(*options)

type options struct {
	callTimeout      time.Duration
	resyncInterval   time.Duration
	backoffMin       time.Duration
	backoffMax       time.Duration
	maxResponseBytes int
	readyInterval    time.Duration
	readyAttempt     time.Duration
	logger           *slog.Logger
	dial             func(ctx context.Context) (net.Conn, error)
}

// Defaults of the options.
const (
	DefaultCallTimeout      = 10 * time.Second
	DefaultResyncInterval   = 500 * time.Millisecond
	DefaultMaxResponseBytes = 64 << 20
)

func defaultOptions() options {
	return options{
		callTimeout:      DefaultCallTimeout,
		resyncInterval:   DefaultResyncInterval,
		backoffMin:       50 * time.Millisecond,
		backoffMax:       2 * time.Second,
		maxResponseBytes: DefaultMaxResponseBytes,
		readyInterval:    250 * time.Millisecond,
		readyAttempt:     500 * time.Millisecond,
		logger:           slog.New(slog.DiscardHandler),
	}
}

// WithCallTimeout sets the timeout of a call whose context has no deadline
// (default DefaultCallTimeout; 0 means none). Exec adds it to the command's
// own timeout.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) { o.callTimeout = d }
}

// WithResyncInterval sets how long a resync waits for the sync reply before
// sending a fresh 0xFF and sync (default DefaultResyncInterval).
func WithResyncInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.resyncInterval = d
		}
	}
}

// WithReconnectBackoff sets the first and the longest wait between reconnect
// attempts (defaults 50ms and 2s; the wait doubles after each failure).
func WithReconnectBackoff(first, longest time.Duration) Option {
	return func(o *options) {
		if first > 0 && longest >= first {
			o.backoffMin, o.backoffMax = first, longest
		}
	}
}

// WithMaxResponseBytes bounds one line from the agent (default
// DefaultMaxResponseBytes, enough for a maximal file_read in base64). Longer
// lines are discarded as they stream in: the guest is not trusted to bound
// its own output.
func WithMaxResponseBytes(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxResponseBytes = n
		}
	}
}

// WithReadyPolling sets WaitReady's pause between pings and the timeout of
// each ping (defaults 250ms and 500ms).
func WithReadyPolling(interval, attempt time.Duration) Option {
	return func(o *options) {
		if interval > 0 && attempt > 0 {
			o.readyInterval, o.readyAttempt = interval, attempt
		}
	}
}

// WithLogger sets the logger for connection events (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithDialer makes the client connect (and reconnect) with dial instead of
// dialing the unix socket path, e.g. to a named pipe on Windows.
func WithDialer(dial func(ctx context.Context) (net.Conn, error)) Option {
	return func(o *options) { o.dial = dial }
}
