// Package server frames and dispatches the agent's JSON-RPC 2.0 protocol:
// one message per line on any byte stream (a virtio-serial port, a unix
// socket connection).
//
// Requests on a connection run concurrently, up to a bound; each response is
// encoded into a reusable buffer and written as one whole line under a lock,
// so replies never interleave but may come out of order (hosts match them by
// id). Lines are bounded: an over-long line is skipped as it streams in and
// answered with -32600, and a 0xFF byte drops any partial line. See
// agent/PROTOCOL.md for the wire contract.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/transport/rawio"
)

// Handler runs one method. It returns a result, which the server encodes as
// JSON, or an error: a *protocol.Error (also wrapped) keeps its code, any
// other error is sent as -32603. params is nil when the request had none (or
// null). ctx is cancelled when the connection's peer is gone or when a
// shutdown's drain time is over.
type Handler func(ctx context.Context, params json.RawMessage) (any, error)

// Defaults for Options.
const (
	DefaultMaxConcurrent = 10
	DefaultDrainTimeout  = 5 * time.Second
)

// Options configure a Server. Zero values mean the defaults.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// MaxConcurrent bounds the requests running at once on one connection
	// (config max_concurrent_requests). When it is reached the server stops
	// reading that connection until a request finishes.
	MaxConcurrent int
	// MaxLineBytes is the longest request line; default
	// protocol.LineLimit(protocol.DefaultMaxFileSize).
	MaxLineBytes int
	// DrainTimeout is how long ServeConn lets running requests finish after
	// its context is cancelled before cancelling them.
	DrainTimeout time.Duration
	// Inline names the methods whose handlers never block (ping, sync,
	// get_agent_info): a single request for one of them is answered on the
	// reading goroutine, without a goroutine of its own, and its reply is
	// written with the other replies ready at that moment. When the replies
	// already waiting for the host pass a bound, these requests take the
	// normal path, so reading never waits on the host. Their handlers get a
	// context on which AfterResponse runs its function at once.
	Inline map[string]bool
	// Budget bounds the memory requests and replies in flight hold on all
	// of the server's connections (config max_memory_bytes); nil is
	// unbounded. See Budget for what is counted.
	Budget *Budget
	// Spooled names the methods that take the string value of their
	// params' "content" member from SpooledContent when the request line
	// was longer than the read buffer (file_write): the server writes it
	// to an unnamed file in SpoolDir as the line streams in instead of
	// holding it in memory. See spool.go.
	Spooled map[string]bool
	// SpoolDir is where spools are created; "" is /var/tmp on Linux and
	// the system's temporary directory elsewhere.
	SpoolDir string
}

// Server dispatches requests to handlers. It is safe for concurrent use by
// several connections.
type Server struct {
	handlers map[string]*entry
	log      *slog.Logger
	maxConc  int
	maxLine  int
	drain    time.Duration
	budget   *Budget
	spoolOn  bool
	spoolDir string
}

type entry struct {
	name    string
	h       Handler
	inline  bool // answered on the reading goroutine (Options.Inline)
	spooled bool // takes its content from SpooledContent (Options.Spooled)
}

// New returns a server for the given methods.
func New(handlers map[string]Handler, opts Options) *Server {
	s := &Server{
		handlers: make(map[string]*entry, len(handlers)),
		log:      opts.Logger,
		maxConc:  opts.MaxConcurrent,
		maxLine:  opts.MaxLineBytes,
		drain:    opts.DrainTimeout,
		budget:   opts.Budget,
		spoolDir: opts.SpoolDir,
	}
	for name, h := range handlers {
		e := &entry{name: name, h: h, inline: opts.Inline[name], spooled: opts.Spooled[name]}
		s.handlers[name] = e
		s.spoolOn = s.spoolOn || e.spooled
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxConc <= 0 {
		s.maxConc = DefaultMaxConcurrent
	}
	if s.maxLine <= 0 {
		s.maxLine = protocol.LineLimit(protocol.DefaultMaxFileSize)
	}
	if s.drain <= 0 {
		s.drain = DefaultDrainTimeout
	}
	return s
}

// MaxLineBytes returns the line limit in force.
func (s *Server) MaxLineBytes() int { return s.maxLine }

// readDeadliner is implemented by connections whose blocked Read can be
// interrupted (net.Conn, os.File, the virtio-serial port).
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// ServeConn reads requests from rw and writes the responses to it until the
// peer closes its end, an I/O error occurs or ctx is cancelled.
//
// When ctx is cancelled ServeConn stops reading at once, lets the running
// requests finish for up to the drain timeout, then cancels them. If rw's
// Read cannot be interrupted (it has no SetReadDeadline), the reading
// goroutine ends only when the caller closes rw, which it should do after
// ServeConn returns.
//
// The result is nil after the peer closed the stream or after a complete
// drain, and the error otherwise.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriter) error {
	c := s.newConn(ctx, rw)
	defer c.cancel()

	readDone := make(chan error, 1)
	go func() { readDone <- c.readLoop() }()

	var readErr error
	cancelled := false
	select {
	case readErr = <-readDone:
		// End of input may be a half-close: the running requests finish
		// and their replies are written.
		c.stopReading()
	case <-c.broken:
		// A reply could not be written; the handlers are cancelled and
		// reading has stopped (or ends when the caller closes rw).
	case <-ctx.Done():
		c.stopReading()
		cancelled = true
	}

	idle := make(chan struct{})
	go func() { c.wg.Wait(); close(idle) }()
	if !cancelled {
		select {
		case <-idle:
			return c.result(readErr)
		case <-ctx.Done():
		}
	}
	timer := time.NewTimer(s.drain)
	defer timer.Stop()
	select {
	case <-idle:
		return c.result(readErr)
	case <-timer.C:
	}
	c.cancel()
	// Cancelled handlers kill their children and return promptly; give
	// them a moment so that nothing is left running when the agent exits.
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	select {
	case <-idle:
	case <-grace.C:
	}
	return fmt.Errorf("drain: requests still running after %v were cancelled", s.drain)
}

// conn is the state of one ServeConn.
type conn struct {
	s      *Server
	rw     io.ReadWriter
	io     io.ReadWriter   // rw, or its raw reads and writes
	hctx   context.Context // parent of the handlers' contexts
	cancel context.CancelFunc
	sem    chan struct{}
	stop   chan struct{} // closed when reading stops
	broken chan struct{} // closed when a write failed

	mu       sync.Mutex // guards closing and wg.Add
	closing  bool
	stopOnce sync.Once
	wg       sync.WaitGroup

	w   *writer // serialises and coalesces the reply lines
	out *encBuf // the read loop's replies not yet handed to w
}

func (s *Server) newConn(ctx context.Context, rw io.ReadWriter) *conn {
	// Handlers outlive ctx by the drain time: they get a context of their
	// own, cancelled when the drain is over or the peer is gone.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &conn{
		s:      s,
		rw:     rw,
		hctx:   hctx,
		cancel: cancel,
		sem:    make(chan struct{}, s.maxConc),
		stop:   make(chan struct{}),
		broken: make(chan struct{}),
	}
	// Lines are read and replies written with raw system calls where the
	// descriptor allows (rawio.New); deadlines stay with rw.
	c.io = rw
	if raw := rawio.New(rw); raw != nil {
		c.io = raw
	}
	c.w = newWriter(c.io, c.writeFailed, c.spawn)
	return c
}

// writeFailed breaks the connection after a write error: later lines are
// dropped, reading stops and the handlers are cancelled.
func (c *conn) writeFailed(err error) {
	c.s.log.Debug("write failed, closing the connection", "err", err)
	c.cancel()
	c.stopReading()
	close(c.broken)
}

// spawn runs fn in a goroutine that ServeConn waits for, unless it is
// already past waiting.
func (c *conn) spawn(fn func()) {
	c.mu.Lock()
	counted := !c.closing
	if counted {
		c.wg.Add(1)
	}
	c.mu.Unlock()
	go func() {
		if counted {
			defer c.wg.Done()
		}
		fn()
	}()
}

// stopReading makes the read loop dispatch nothing more and interrupts a
// blocked Read where rw allows it.
func (c *conn) stopReading() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		close(c.stop)
		if d, ok := c.rw.(readDeadliner); ok {
			_ = d.SetReadDeadline(time.Now())
		}
	})
}

func (c *conn) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func (c *conn) result(readErr error) error {
	if werr := c.w.failed(); werr != nil {
		return fmt.Errorf("write response: %w", werr)
	}
	return readErr
}

// readLoop reads and dispatches lines until end of input, an error or stop.
func (c *conn) readLoop() error {
	lr := newLineReader(c.io, c.s.maxLine)
	lr.budget, lr.stop = c.s.budget, c.stop
	lr.spoolOn, lr.spoolDir = c.s.spoolOn, c.s.spoolDir
	c.out = getBuf()
	defer func() {
		lr.close()
		c.flushOut()
		putBuf(c.out)
	}()
	for {
		// Replies answered on this goroutine go out together once no
		// further line is waiting, before reading can block.
		if c.out.Len() > 0 && (c.out.Len() >= maxCoalesce || !lr.lineBuffered()) {
			c.flushOut()
		}
		line, kind, err := lr.next()
		if c.stopped() {
			return nil
		}
		if err != nil && kind != lineRefused {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		}
		if kind == lineOversize {
			c.s.log.Warn("request line too long, discarded", "limit", c.s.maxLine)
			c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest,
				"request line longer than %d bytes", c.s.maxLine))
			continue
		}
		if kind == lineRefused {
			if errors.Is(err, errStopped) {
				return nil
			}
			c.s.log.Warn("request line refused (memory budget, or its content could not be spooled)", "err", err)
			c.reply(nil, budgetProtocolError(err))
			continue
		}
		c.handleLine(line, lr)
		lr.release()
	}
}

// handleLine answers or dispatches one line.
func (c *conn) handleLine(line []byte, lr *lineReader) {
	sp, at := lr.takeSpool()
	lead := 0
	for lead < len(line) && isSpace(line[lead]) {
		lead++
	}
	line = trimSpace(line)
	at -= lead
	if len(line) == 0 {
		return // blank lines are keep-alives
	}
	if !json.Valid(line) || (sp != nil && sp.bad) {
		sp.Close()
		c.reply(nil, protocol.Errorf(protocol.CodeParseError, "parse error: the line is not valid JSON"))
		return
	}
	// A line longer than the read buffer lives in the line reader's scratch
	// buffer: hand that over instead of copying big params.
	owned := false
	var hold *Hold
	if len(line) > readBufferSize {
		hold = c.s.budget.Adopt(lr.detach())
		owned = true
	}
	if sp != nil && line[0] != '{' {
		sp.Close() // only an object's params are spooled
		sp = nil
	}
	switch line[0] {
	case '{':
		c.single(line, owned, hold, sp, at)
	case '[':
		c.batch(line, owned, hold)
	default:
		c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: a request must be a JSON object"))
	}
}

// call is one request being handled.
type call struct {
	c      *conn
	e      *entry
	params json.RawMessage
	id     []byte // nil for a notification
	notify bool
	big    bool   // the request line was over bigRequest bytes
	b      *batch // nil unless part of a batch
	part   int    // index in b.parts
	hold   *Hold  // its memory budget: the line it came in, what its handler reserved
	spool  *Spool // its params.content, taken out of the line (nil if not)

	mu    sync.Mutex
	done  bool // response written (or dropped)
	hooks []func()
}

// prepare validates a request object. It returns either a call ready to run
// or the error to answer with (id is the id to answer with, nil for null).
// Both are nil for a notification that needs no answer.
func (c *conn) prepare(obj []byte, owned bool) (cl *call, id []byte, perr *protocol.Error) {
	r := scanRequest(obj)
	if r.id != nil && !idOK(r.id) {
		return nil, nil, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: id must be a number, a string or null")
	}
	if r.id != nil && !(r.hasDup && r.dup == "id") {
		id = append([]byte(nil), r.id...)
	}
	if r.hasDup {
		return nil, id, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: member %q given twice", printable([]byte(r.dup)))
	}
	if !jsonrpcOK(r.jsonrpc) {
		return nil, id, protocol.Errorf(protocol.CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
	}
	name, ok := methodName(r.method)
	if !ok {
		return nil, id, protocol.Errorf(protocol.CodeInvalidRequest, `invalid request: "method" must be a string`)
	}
	if r.params != nil && !paramsOK(r.params) {
		return nil, id, protocol.Errorf(protocol.CodeInvalidRequest, `invalid request: "params" must be an object or an array`)
	}
	e := c.s.handlers[string(name)]
	if e == nil {
		if r.id == nil {
			return nil, nil, nil
		}
		return nil, id, protocol.Errorf(protocol.CodeMethodNotFound, "method %q not found", printable(name))
	}
	cl = &call{c: c, e: e, id: id, notify: r.id == nil}
	if r.params != nil && r.params[0] != 'n' {
		if owned {
			cl.params = r.params
		} else {
			cl.params = append(json.RawMessage(nil), r.params...)
		}
	}
	return cl, nil, nil
}

// single answers or starts one request object. sp, when not nil, is its
// params.content string, spooled while the line came in; at is where its
// text belongs in obj.
func (c *conn) single(obj []byte, owned bool, hold *Hold, sp *Spool, at int) {
	cl, id, perr := c.prepare(obj, owned)
	if cl == nil {
		hold.Release() // the line is not kept
		sp.Close()
	}
	switch {
	case perr != nil:
		c.reply(id, perr)
	case cl != nil && sp != nil && !cl.e.spooled:
		// A method that takes its params whole: rebuild the line.
		hold.Release()
		full, fhold, err := c.unspool(obj, sp, at)
		sp.Close()
		if err != nil {
			c.reply(cl.id, budgetProtocolError(err))
			return
		}
		c.single(full, true, fhold, nil, 0)
	case cl != nil:
		if hold == nil {
			hold = c.s.budget.NewHold()
		}
		cl.hold = hold
		cl.spool = sp
		cl.big = int64(len(obj))+sp.size() > bigRequest
		if cl.e.inline && sp == nil && c.w.room(c.out.Len()) {
			c.runInline(cl)
			return
		}
		if !c.start(cl) {
			hold.Release()
			sp.Close()
		}
	}
}

// unspool rebuilds in memory the line a spool was taken out of, its size
// taken from the budget's share of request input.
func (c *conn) unspool(obj []byte, sp *Spool, at int) ([]byte, *Hold, error) {
	n := int64(len(obj)) + sp.n
	if err := c.s.budget.Acquire(c.stop, n); err != nil {
		return nil, nil, err
	}
	hold := c.s.budget.Adopt(n)
	text, err := sp.bytes()
	if err != nil {
		hold.Release()
		return nil, nil, err
	}
	full := make([]byte, 0, n)
	full = append(full, obj[:at]...)
	full = append(full, text...)
	full = append(full, obj[at:]...)
	return full, hold, nil
}

// runInline handles a call of a method that never blocks on the read loop's
// goroutine and adds its reply to the read loop's pending replies.
func (c *conn) runInline(cl *call) {
	// Its line (a long one was adopted from the line reader) is not
	// needed once the handler returned; the small reply is not counted.
	defer cl.hold.Release()
	result, err := cl.invoke(c.hctx)
	if !cl.notify {
		c.out.appendResponse(cl.id, result, asProtocolError(err))
		c.out.WriteByte('\n')
	}
}

// flushOut hands the read loop's pending replies to the writer, which never
// makes it wait.
func (c *conn) flushOut() {
	if c.out.Len() == 0 {
		return
	}
	if c.w.post(c.out) {
		c.out = getBuf()
		return
	}
	c.out.Reset()
}

// start runs cl in its own goroutine once a concurrency slot is free. It
// reports false, without running cl, when reading has stopped meanwhile.
func (c *conn) start(cl *call) bool {
	select {
	case c.sem <- struct{}{}:
	case <-c.stop:
		return false
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.sem
		return false
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go cl.run()
	return true
}

type afterKey struct{}

// run handles the call and sends its response.
func (cl *call) run() {
	c := cl.c
	defer c.wg.Done()
	// The slot is held until the response is written, so a peer that does
	// not read its replies cannot pile up finished requests.
	defer func() { <-c.sem }()
	ctx := context.WithValue(c.hctx, afterKey{}, cl)
	ctx = WithHold(ctx, cl.hold)
	if cl.spool != nil {
		ctx = WithSpool(ctx, cl.spool)
	}
	result, err := cl.invoke(ctx)
	cl.spool.Close()
	perr := asProtocolError(err)
	if cl.b != nil {
		cl.b.finish(cl, result, perr)
		return
	}
	defer cl.hold.Release()
	big := cl.big
	sr, stream := result.(StreamResult)
	if stream {
		defer sr.Close()
	}
	if stream && !cl.notify && perr == nil {
		head, tail := responseParts(cl.id)
		if err := c.w.writeStream(head, sr, tail); err != nil {
			c.s.log.Error("reply cut short: its result failed while it was written", "method", cl.e.name, "id", string(cl.id), "err", err)
		}
		big = true
	} else if raw, ok := result.(RawResult); ok && !cl.notify && perr == nil && len(raw) > rawResultInline {
		head, tail := responseParts(cl.id)
		c.write(head, raw, tail)
		big = big || len(raw) > bigRequest
	} else if !cl.notify {
		buf := getBuf()
		buf.appendResponse(cl.id, result, perr)
		buf.WriteByte('\n')
		c.write(buf.Bytes())
		putBuf(buf)
	}
	cl.runHooks()
	if big {
		cl.params, result = nil, nil
		releaseMemory()
	}
}

// bigRequest is the size of a request line or of a raw result (a file_write,
// a file_read) past which the memory it held is handed back to the OS once
// its response is written.
const bigRequest = 1 << 20

// releasing is set while releaseMemory runs.
var releasing atomic.Bool

// releaseMemory collects the garbage and returns the free memory to the OS
// at once. Without it a multi-megabyte buffer just dropped stays in the heap
// until the next collection, which a quiet agent may not run for a long time,
// and the next big request then allocates its buffer beside it: the agent's
// peak would be two big requests instead of one, and its pages would stay
// resident between requests. One collection at a time: the requests that
// end meanwhile are covered by the next one, or by the runtime's own.
func releaseMemory() {
	if releasing.CompareAndSwap(false, true) {
		debug.FreeOSMemory()
		releasing.Store(false)
	}
}

// invoke calls the handler, turning a panic into an internal error.
func (cl *call) invoke(ctx context.Context) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			cl.c.s.log.Error("handler panicked", "method", cl.e.name, "panic", p, "stack", string(debug.Stack()))
			result, err = nil, protocol.Errorf(protocol.CodeInternalError, "internal error in %s", cl.e.name)
		}
	}()
	if log := cl.c.s.log; log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("request", "method", cl.e.name, "id", string(cl.id))
	}
	return cl.e.h(ctx, cl.params)
}

func asProtocolError(err error) *protocol.Error {
	if err == nil {
		return nil
	}
	var berr *BudgetError
	if errors.As(err, &berr) {
		return berr.ProtocolError()
	}
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	return &protocol.Error{Code: protocol.CodeInternalError, Message: err.Error()}
}

// runHooks runs the functions registered with AfterResponse, in order.
func (cl *call) runHooks() {
	cl.mu.Lock()
	cl.done = true
	hooks := cl.hooks
	cl.hooks = nil
	cl.mu.Unlock()
	for _, fn := range hooks {
		fn()
	}
}

// AfterResponse registers fn to run once the response to the request whose
// handler got ctx has been written to the transport (or dropped because the
// peer is gone, or never sent because the request is a notification). A
// batch's hooks run after the whole batch's response. Hooks run in order, in
// the request's goroutine, so a shutdown drain waits for them: start long
// work in a goroutine of its own. Called with a context that is not a
// request's, or after the response was written, AfterResponse runs fn at once.
func AfterResponse(ctx context.Context, fn func()) {
	cl, ok := ctx.Value(afterKey{}).(*call)
	if ok {
		cl.mu.Lock()
		if !cl.done {
			cl.hooks = append(cl.hooks, fn)
			cl.mu.Unlock()
			return
		}
		cl.mu.Unlock()
	}
	fn()
}

// reply sends an error response from the read loop: with the inline
// replies while the writer has room, otherwise waiting for its line to be
// written.
func (c *conn) reply(id []byte, perr *protocol.Error) {
	if c.w.room(c.out.Len()) {
		c.out.appendResponse(id, nil, perr)
		c.out.WriteByte('\n')
		return
	}
	c.flushOut()
	buf := getBuf()
	buf.appendResponse(id, nil, perr)
	buf.WriteByte('\n')
	c.write(buf.Bytes())
	putBuf(buf)
}

// write sends one whole line and returns once it is written. After a write
// error the connection is broken: later lines are dropped.
func (c *conn) write(parts ...[]byte) { c.w.write(parts...) }

// budgetProtocolError is the reply to a line the budget had no room for.
func budgetProtocolError(err error) *protocol.Error {
	var berr *BudgetError
	if errors.As(err, &berr) {
		return berr.ProtocolError()
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "request refused: %v", err)
}

func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
