// Package client is the host side of the kvmmanager-agent protocol: it talks
// JSON-RPC 2.0, one message per line, to the agent through the unix socket
// that QEMU (or libvirt) puts behind the VM's virtio-serial port
// org.kvmmanager.agent.0, or to an agent started with --listen.
//
// One Client multiplexes many calls on one connection. Every request gets a
// numeric id from a counter that lives as long as the Client (across
// reconnects), so an id is never reused and a reply is matched to its call by
// id alone, whatever order the agent answers in.
//
// # Deadlines and resynchronisation
//
// Each Call ends at its context's deadline (or after the default call timeout
// when the context has none). When a call gives up while its request is
// outstanding, the client resynchronises the stream: it writes a 0xFF byte
// (the agent drops any partial line) and then sync{"id": R} with a random R,
// until the agent answers R. The rules while that happens are:
//
//   - A reply whose id belongs to a call still waiting is delivered to it:
//     ids are unique, so such a reply cannot be stale.
//   - A reply with an unknown id (the late reply of the call that gave up, or
//     a reply written to an earlier connection) or a line that is not a
//     response is dropped. This holds at all times, not only during a resync.
//   - A reply with id R ends the resync. It proves the agent reads our stream
//     from a clean line boundary and answers; it does not prove that every
//     older reply has been flushed (the agent answers concurrently), which is
//     why stale replies are recognised by id and never by position.
//   - Calls issued during a resync wait for it to end before sending, or fail
//     with their context's error ("waiting for the stream to resynchronise").
//     The sync is re-sent every resync interval (a fresh 0xFF and R) until
//     answered, so a resync started while the guest agent is not running
//     completes as soon as it starts.
//
// Sync ids R are drawn from [2^40, 2^53): above any counter id, and exact in
// a float64 for agents that decode ids as JSON numbers.
//
// A write that stops in the middle of a line (its deadline passed) marks the
// stream dirty; the next write starts with 0xFF so the agent discards the
// fragment. Every new connection also starts with 0xFF, because with a QEMU
// chardev socket the guest may still hold a fragment from a previous host.
//
// # Reconnecting
//
// When the connection ends (EOF, ECONNRESET, any read or write error), every
// call waiting for a reply fails with an error matching ErrDisconnected, and
// the next Call dials again, retrying with backoff until its context ends.
// A call whose request was not yet sent is not failed: it moves to the new
// connection. Calls that were sent are never re-sent (exec_command and
// file_write are not idempotent).
//
// With a QEMU chardev socket (server=on) the connection succeeds even when
// the guest agent is not running: it simply does not answer. WaitReady pings
// until it does.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// ErrDisconnected matches the error of a call that was sent but lost its
// connection before the reply came, and of a reconnect that did not succeed
// within the call's context.
var ErrDisconnected = errors.New("connection to the agent lost")

// ErrClosed matches the error of calls on, or pending at, a closed Client.
var ErrClosed = errors.New("client closed")

// Client is a connection to one agent. It is safe for concurrent use.
type Client struct {
	path   string
	opts   options
	nextID atomic.Int64

	dialSem chan struct{} // held by the goroutine that (re)connects

	mu     sync.Mutex
	sess   *session
	closed bool
}

// Dial connects to the agent socket at socketPath. It makes one attempt:
// reconnecting with backoff is for an established Client whose connection
// dropped. Dial does not wait for the agent to answer; see WaitReady.
func Dial(ctx context.Context, socketPath string, opts ...Option) (*Client, error) {
	c := &Client{path: socketPath, opts: defaultOptions(), dialSem: make(chan struct{}, 1)}
	for _, o := range opts {
		o(&c.opts)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to agent socket %s: %w", socketPath, err)
	}
	c.sess = newSession(c, conn)
	return c, nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if c.opts.dial != nil {
		return c.opts.dial(ctx)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", c.path)
}

// Close closes the connection. Calls waiting for a reply fail with an error
// matching ErrClosed; later calls fail the same way.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		s.fail(ErrClosed)
		s.wg.Wait()
	}
	return nil
}

// Call sends method with params (nil for none) and decodes the result into
// result (nil to discard it). It returns when the reply arrives, the context
// ends (an error matching context.DeadlineExceeded or context.Canceled), or
// the connection is lost (ErrDisconnected). An error answered by the agent
// is a *protocol.Error (use errors.As).
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	if _, ok := ctx.Deadline(); !ok && c.opts.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.callTimeout)
		defer cancel()
	}
	var rawParams json.RawMessage
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("%s: encode params: %w", method, err)
		}
		rawParams = b
	}
	id := c.nextID.Add(1)
	line, err := json.Marshal(protocol.Request{
		JSONRPC: protocol.JSONRPCVersion,
		Method:  method,
		Params:  rawParams,
		ID:      json.RawMessage(strconv.FormatInt(id, 10)),
	})
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", method, err)
	}
	line = append(line, '\n')

	replies := make(chan *protocol.Response, 1)
	s, err := c.prepare(ctx, id, replies)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if _, err := s.write(ctx, line); err != nil {
		s.unregister(id)
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			return fmt.Errorf("%s: send request: %w", method, err)
		case !s.alive():
			return fmt.Errorf("%s: %w", method, s.err)
		}
		err = fmt.Errorf("%w: send %s request: %w", ErrDisconnected, method, err)
		s.fail(err)
		return err
	}

	select {
	case resp := <-replies:
		return decodeResponse(method, resp, result)
	case <-ctx.Done():
		if s.unregister(id) {
			s.startResync()
			return fmt.Errorf("%s: no reply: %w", method, ctx.Err())
		}
		// The reply was delivered while we gave up: use it.
		return decodeResponse(method, <-replies, result)
	case <-s.done:
		select {
		case resp := <-replies:
			return decodeResponse(method, resp, result)
		default:
		}
		return fmt.Errorf("%s: %w", method, s.err)
	}
}

// prepare returns a live, synchronised session on which id is registered
// for a reply. A session that dies before the request is sent is replaced:
// nothing was sent, so the call can move to a new connection.
func (c *Client) prepare(ctx context.Context, id int64, replies chan *protocol.Response) (*session, error) {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.waitInSync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue // the session died while resynchronising
		}
		if s.register(id, replies) {
			return s, nil
		}
		if errors.Is(s.err, ErrClosed) {
			return nil, s.err
		}
	}
}

// session returns the live session, dialling again with backoff (bounded by
// ctx) when the previous connection is gone.
func (c *Client) session(ctx context.Context) (*session, error) {
	if s, err := c.current(); s != nil || err != nil {
		return s, err
	}
	select {
	case c.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting to reconnect to %s: %w", ErrDisconnected, c.path, ctx.Err())
	}
	defer func() { <-c.dialSem }()
	if s, err := c.current(); s != nil || err != nil {
		return s, err
	}
	delay := c.opts.backoffMin
	for {
		conn, err := c.dial(ctx)
		if err == nil {
			s := newSession(c, conn)
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.closed {
				s.fail(ErrClosed)
				return nil, ErrClosed
			}
			c.sess = s
			c.opts.logger.Debug("reconnected to agent", "socket", c.path)
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: reconnect to %s: %w (last attempt: %v)", ErrDisconnected, c.path, ctx.Err(), err)
		}
		c.opts.logger.Debug("reconnect failed", "socket", c.path, "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: reconnect to %s: %w (last attempt: %v)", ErrDisconnected, c.path, ctx.Err(), err)
		}
		delay = min(2*delay, c.opts.backoffMax)
	}
}

// current returns the live session, nil if there is none, or ErrClosed.
func (c *Client) current() (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.sess != nil && c.sess.alive() {
		return c.sess, nil
	}
	return nil, nil
}

func decodeResponse(method string, resp *protocol.Response, result any) error {
	if resp.Error != nil {
		return fmt.Errorf("%s: %w", method, resp.Error)
	}
	if result == nil {
		return nil
	}
	if len(resp.Result) == 0 {
		return fmt.Errorf("%s: response has neither result nor error", method)
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("%s: decode result: %w", method, err)
	}
	return nil
}

// session is one connection and its reader.
type session struct {
	c    *Client
	conn net.Conn

	writeSem chan struct{} // one writer at a time; waiting honours contexts
	dirty    bool          // guarded by writeSem: the next write starts with 0xFF

	mu      sync.Mutex
	pending map[int64]chan *protocol.Response
	resync  *resync       // non-nil while resynchronising
	done    chan struct{} // closed when the connection is gone
	err     error         // why; set before done is closed
	wg      sync.WaitGroup
}

// resync is one resynchronisation episode. ids holds every sync id sent in
// it; a reply to any of them ends it.
type resync struct {
	ids  map[int64]bool
	done chan struct{}
}

func newSession(c *Client, conn net.Conn) *session {
	s := &session{
		c:        c,
		conn:     conn,
		writeSem: make(chan struct{}, 1),
		dirty:    true, // a fresh connection starts with 0xFF
		pending:  make(map[int64]chan *protocol.Response),
		done:     make(chan struct{}),
	}
	s.wg.Add(1)
	go s.readLoop()
	return s
}

func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// fail ends the session with err (the first error wins): the connection is
// closed and every waiting call sees done.
func (s *session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	clear(s.pending)
	s.resync = nil
	close(s.done)
	s.conn.Close()
}

func (s *session) register(id int64, ch chan *protocol.Response) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	s.pending[id] = ch
	return true
}

// unregister removes id and reports whether it was still waiting.
func (s *session) unregister(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	return ok
}

// waitInSync returns when no resync is in progress.
func (s *session) waitInSync(ctx context.Context) error {
	s.mu.Lock()
	rs, err := s.resync, s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if rs == nil {
		return nil
	}
	select {
	case <-rs.done:
		return nil
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the stream to resynchronise after an earlier call timed out: %w", ctx.Err())
	}
}

// write writes b as one unit, or fails with ctx's error when ctx ends first.
// It returns how many bytes of b reached the connection.
func (s *session) write(ctx context.Context, b []byte) (int, error) {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.done:
		return 0, s.err
	}
	defer func() { <-s.writeSem }()

	prefix := 0
	if s.dirty {
		b = append([]byte{protocol.ResyncByte}, b...)
		prefix = 1
	}
	deadline, _ := ctx.Deadline() // zero: none
	if err := s.conn.SetWriteDeadline(deadline); err != nil {
		return 0, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.conn.SetWriteDeadline(time.Unix(1, 0)) //nolint:errcheck // wakes the writer; the write reports the error
		close(fired)
	})
	n, err := s.conn.Write(b)
	if !stop() {
		<-fired // the next writer must not inherit a deadline in the past
	}
	if n > 0 {
		// From here on the stream holds a fragment unless everything went out.
		s.dirty = err != nil
	}
	n = max(n-prefix, 0)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			return n, context.DeadlineExceeded
		}
		return n, err
	}
	return n, nil
}

// startResync starts a resynchronisation unless one is running.
func (s *session) startResync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resync != nil || s.err != nil {
		return
	}
	rs := &resync{ids: make(map[int64]bool), done: make(chan struct{})}
	s.resync = rs
	s.wg.Add(1)
	go s.runResync(rs)
}

// runResync sends 0xFF + sync{R} every resync interval until a reply to one
// of them arrives or the session ends.
func (s *session) runResync(rs *resync) {
	defer s.wg.Done()
	interval := s.c.opts.resyncInterval
	for {
		r := syncID()
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return
		}
		rs.ids[r] = true
		s.mu.Unlock()

		line, _ := json.Marshal(protocol.Request{
			JSONRPC: protocol.JSONRPCVersion,
			Method:  protocol.MethodSync,
			Params:  json.RawMessage(`{"id":` + strconv.FormatInt(r, 10) + `}`),
			ID:      json.RawMessage(strconv.FormatInt(r, 10)),
		})
		msg := append([]byte{protocol.ResyncByte}, append(line, '\n')...)
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		s.c.opts.logger.Debug("resynchronising stream", "socket", s.c.path, "sync_id", r)
		_, err := s.write(ctx, msg)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			cancel()
			s.fail(fmt.Errorf("%w: send sync: %w", ErrDisconnected, err))
			return
		}
		select {
		case <-rs.done:
			cancel()
			return
		case <-s.done:
			cancel()
			return
		case <-ctx.Done():
			cancel()
		}
	}
}

// syncID returns a random id in [2^40, 2^53).
func syncID() int64 {
	const lo, hi = int64(1) << 40, int64(1) << 53
	return lo + rand.Int64N(hi-lo)
}

func (s *session) readLoop() {
	defer s.wg.Done()
	r := bufio.NewReaderSize(s.conn, 64<<10)
	for {
		line, err := readLine(r, s.c.opts.maxResponseBytes)
		if errors.Is(err, errLineTooLong) {
			s.c.opts.logger.Warn("dropping over-long line from agent", "socket", s.c.path, "limit_bytes", s.c.opts.maxResponseBytes)
			continue
		}
		if err != nil {
			s.fail(fmt.Errorf("%w: read from %s: %w", ErrDisconnected, s.c.path, err))
			return
		}
		s.dispatch(line)
	}
}

// dispatch routes one line from the agent; see the package documentation
// for which lines are delivered and which are dropped.
func (s *session) dispatch(line []byte) {
	log := s.c.opts.logger
	var resp protocol.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		log.Debug("dropping line that is not a JSON-RPC response", "err", err, "len", len(line))
		return
	}
	var id int64
	if len(resp.ID) == 0 || string(resp.ID) == "null" || json.Unmarshal(resp.ID, &id) != nil {
		if resp.Error != nil {
			log.Warn("agent reported an error for a request it could not identify",
				"code", resp.Error.Code, "message", resp.Error.Message)
		} else {
			log.Debug("dropping response without a numeric id", "id", string(resp.ID))
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs := s.resync; rs != nil && rs.ids[id] {
		if resp.Error != nil {
			// It still proves the agent parsed our line: the stream is in sync.
			log.Warn("agent answered sync with an error", "code", resp.Error.Code, "message", resp.Error.Message)
		}
		s.resync = nil
		close(rs.done)
		return
	}
	ch, ok := s.pending[id]
	if !ok {
		log.Debug("dropping reply to an unknown or abandoned request", "id", id)
		return
	}
	delete(s.pending, id)
	ch <- &resp // buffered, one reply per id
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline. A line longer than
// limit is consumed as it streams in and reported as errLineTooLong.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > limit+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errLineTooLong
			}
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}
