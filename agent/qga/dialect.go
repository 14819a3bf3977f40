//go:build !windows

// Package qga serves the QEMU guest agent protocol (qemu-ga's dialect of
// QMP) on the virtio-serial port org.qemu.guest_agent.0, over the same back
// end (agent/methods), policy and configuration as the agent's JSON-RPC
// dialect, so that libvirt (virsh guestinfo, domifaddr --source agent,
// domfsinfo, domtime, shutdown --mode agent, ...), virsh
// qemu-agent-command and the tools built on them can use the agent.
//
// The wire contract is the schema in agent/qga/qapi; the commands are
// registered in commands.go, one group per file. The wire rules are
// qemu-ga's: a stream of JSON objects {"execute": NAME, "arguments": {...},
// "id": ID} (not necessarily one per line); one reply per line,
// {"return": ...} or {"error": {"class": ..., "desc": ...}}, with the id
// echoed; commands answered in order; a 0xFF byte resets the parser;
// guest-sync-delimited puts 0xFF before its reply; commands with
// 'success-response': false (guest-shutdown) reply only on error. See
// agent/PROTOCOL-qga.md for the differences from qemu-ga.
package qga

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
	"github.com/kvmmanager/guest-agent/agent/server"
	"github.com/kvmmanager/guest-agent/agent/transport/rawio"
)

// Options configure a Dialect. Zero values mean the defaults.
type Options struct {
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// MaxObject bounds one request's size in bytes; default
	// DefaultMaxObject. A larger request is skipped as it streams in and
	// answered with an error.
	MaxObject int
	// HostRoot prefixes the files the information commands read, as
	// methods.Options.HostRoot; "" means "/".
	HostRoot string
	// Budget bounds the memory the dialect's requests and replies in
	// flight hold (config max_memory_bytes), shared with the JSON-RPC
	// server; nil is unbounded.
	Budget *server.Budget
}

// Dialect answers QGA commands with a methods.Service. It is safe for
// concurrent use by several connections; each ServeConn is one session
// (its open files are closed when it ends).
type Dialect struct {
	svc    *methods.Service
	cfg    *config.Config
	log    *slog.Logger
	opts   Options
	cmds   []*Command
	byName map[string]*Command

	nextHandle atomic.Int64 // guest-file handles given out so far
}

// Command is one QGA command of the registry.
type Command struct {
	// Name is the schema's command name (qapi.Cmd*).
	Name string
	// Handler runs the command. args is the "arguments" object as sent
	// (nil when absent); the handler decodes it strictly (see Args). The
	// result is encoded as the reply's "return"; nil is {}. An *Error
	// keeps its class; any other error is a GenericError with its text.
	// ctx is cancelled when the agent stops or the session ends.
	Handler func(ctx context.Context, args json.RawMessage) (any, error)
	// NoSuccessResponse is the schema's 'success-response': false: nothing
	// is sent when the command succeeds (guest-shutdown).
	NoSuccessResponse bool
	// Method is the protocol 1.0 method whose name in disabled_methods
	// also disables this command ("" if none).
	Method string

	// delimited puts 0xFF before the reply (guest-sync-delimited).
	delimited bool
	// inline: the handler never blocks (sync, ping, info), so when no
	// command is queued or running it is answered on the reading
	// goroutine, without two goroutine hand-offs.
	inline bool
}

// New returns the dialect over svc, configured by cfg (the same cfg svc
// was made with).
func New(svc *methods.Service, cfg *config.Config, opts Options) *Dialect {
	d := &Dialect{svc: svc, cfg: cfg, log: opts.Logger, opts: opts, byName: map[string]*Command{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.opts.MaxObject <= 0 {
		d.opts.MaxObject = DefaultMaxObject
	}
	if d.opts.HostRoot == "" {
		d.opts.HostRoot = "/"
	}
	for _, group := range d.groups() {
		for _, c := range group {
			if !qapi.Known(c.Name) {
				panic(fmt.Sprintf("qga: command %q is not in the schema", c.Name))
			}
			d.add(c)
		}
	}
	return d
}

// add registers c; a name registered twice is a programming error.
func (d *Dialect) add(c Command) {
	if d.byName[c.Name] != nil {
		panic(fmt.Sprintf("qga: command %q registered twice", c.Name))
	}
	d.byName[c.Name] = &c
	d.cmds = append(d.cmds, &c)
}

// Args decodes a command's arguments strictly into dst, a pointer to a
// qapi.<Command>Args struct, with qemu-ga's error texts (see args.go).
func Args(args json.RawMessage, dst any) error {
	if err := decodeArgs(args, dst); err != nil {
		return err
	}
	return nil
}

// Typed makes a Handler of a function of the decoded arguments.
func Typed[A, R any](fn func(ctx context.Context, args *A) (R, error)) func(context.Context, json.RawMessage) (any, error) {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a A
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return fn(ctx, &a)
	}
}

// NoArgs makes a Handler of a function of a command without arguments
// (any argument is "Parameter 'x' is unexpected").
func NoArgs[R any](fn func(ctx context.Context) (R, error)) func(context.Context, json.RawMessage) (any, error) {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		if err := decodeArgs(raw, &struct{}{}); err != nil {
			return nil, err
		}
		return fn(ctx)
	}
}

// enabled reports whether the config leaves the command on.
func (d *Dialect) enabled(c *Command) bool {
	return !d.cfg.MethodDisabled(c.Name) && (c.Method == "" || !d.cfg.MethodDisabled(c.Method))
}

// readDeadliner is implemented by connections whose blocked Read can be
// interrupted (net.Conn, os.File, the virtio-serial port).
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// hostWatcher is implemented by connections that span several host
// connections (transport's virtio-serial port).
type hostWatcher interface {
	OnHostGone(fn func())
}

// maxInlineOut bounds the inline replies collected before they are written.
const maxInlineOut = 64 << 10

// queueDepth bounds the requests read ahead of the one running.
const queueDepth = 4

// ServeConn reads commands from rw and writes the replies to it, in order,
// until the peer closes its end (the queued commands are still answered),
// an I/O error occurs or ctx is cancelled. The result is nil after the peer
// closed the stream and the error otherwise. The session's open files are
// closed when it returns.
func (d *Dialect) ServeConn(ctx context.Context, rw io.ReadWriter) error {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess := newSession(d)
	defer sess.close()
	hctx = withSession(hctx, sess)
	if hg, ok := rw.(hostWatcher); ok {
		// The port outlives its hosts: a host that leaves loses its files.
		hg.OnHostGone(sess.hostGone)
	}

	// conn does the reads and writes; rw keeps its other abilities
	// (deadlines, host watching).
	var conn io.ReadWriter = rw
	if raw := rawio.New(rw); raw != nil {
		conn = raw
	}

	items := make(chan item, queueDepth)
	stop := make(chan struct{})
	readDone := make(chan error, 1)
	// pending counts the commands handed to this loop and not yet
	// answered; only the reader adds to it, so when the reader sees 0
	// nothing is queued or running and it may answer an inline command
	// itself without breaking the order of replies.
	var pending atomic.Int64
	// The replies of inline commands are collected while one read's
	// requests are handled and written together (one write for a host's
	// burst of pings), before anything is queued and before the next read,
	// so they stay in order.
	var out []byte
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		_, err := conn.Write(out)
		out = out[:0]
		if err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
		return nil
	}
	inline := func(it item) (bool, error) {
		if pending.Load() != 0 || !d.isInline(it) {
			return false, nil
		}
		hold := d.opts.Budget.Adopt(it.charged)
		defer hold.Release()
		r := d.handle(server.WithHold(hctx, hold), it)
		if r.body != nil {
			if err := flush(); err != nil {
				return true, err
			}
			if err := r.writeTo(conn); err != nil {
				return true, fmt.Errorf("write reply: %w", err)
			}
			return true, nil
		}
		out = append(out, r.line...)
		if len(out) >= maxInlineOut {
			return true, flush()
		}
		return true, nil
	}
	go func() {
		defer close(items)
		readDone <- d.readLoop(conn, items, stop, &pending, inline, flush)
	}()
	interrupt := func() {
		if rd, ok := rw.(readDeadliner); ok {
			_ = rd.SetReadDeadline(time.Now())
		}
	}
	unwatch := context.AfterFunc(ctx, interrupt)
	defer unwatch()

	var werr error
	for it := range items {
		if ctx.Err() != nil {
			d.opts.Budget.Free(it.charged)
			break
		}
		// The command's memory: its request, what its handler reserves,
		// its reply; given back once the reply is written.
		hold := d.opts.Budget.Adopt(it.charged)
		if err := d.handle(server.WithHold(hctx, hold), it).writeTo(conn); err != nil {
			werr = fmt.Errorf("write reply: %w", err)
		}
		hold.Release()
		pending.Add(-1)
		if werr != nil {
			break
		}
	}
	close(stop)
	// Requests queued but not run give their memory back.
	go func() {
		for it := range items {
			d.opts.Budget.Free(it.charged)
		}
	}()
	if werr != nil || ctx.Err() != nil {
		interrupt()
		if _, ok := rw.(readDeadliner); !ok {
			// The reader ends when the caller closes rw.
			if werr != nil {
				return werr
			}
			return ctx.Err()
		}
	}
	rerr := <-readDone
	switch {
	case werr != nil:
		return werr
	case ctx.Err() != nil:
		return ctx.Err()
	case rerr == nil || errors.Is(rerr, io.EOF):
		return nil
	}
	return fmt.Errorf("read: %w", rerr)
}

// readLoop feeds what rw yields to a stream and queues its items.
func (d *Dialect) readLoop(rw io.Reader, items chan<- item, stop <-chan struct{}, pending *atomic.Int64, inline func(item) (bool, error), flush func() error) error {
	st := &stream{max: d.opts.MaxObject, budget: d.opts.Budget, stop: stop}
	defer st.drop()
	buf := make([]byte, 64<<10)
	stopped := false
	var werr error
	emit := func(it item) {
		if stopped {
			d.opts.Budget.Free(it.charged)
			return
		}
		if done, err := inline(it); done {
			if err != nil {
				werr, stopped = err, true
			}
			return
		}
		if err := flush(); err != nil {
			d.opts.Budget.Free(it.charged)
			werr, stopped = err, true
			return
		}
		pending.Add(1)
		select {
		case items <- it:
		case <-stop:
			d.opts.Budget.Free(it.charged)
			stopped = true
		}
	}
	for {
		n, err := rw.Read(buf)
		if n > 0 {
			st.feed(buf[:n], emit)
			if werr == nil && !stopped {
				werr = flush()
			}
		}
		if werr != nil {
			return werr
		}
		if stopped {
			return nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		if n == 0 {
			return io.EOF
		}
	}
}

// isInline reports whether it is a small request for an enabled command
// whose handler never blocks.
func (d *Dialect) isInline(it item) bool {
	if it.err != nil || len(it.obj) > 4096 {
		return false
	}
	ms, qerr := members(it.obj)
	if qerr != nil {
		return false
	}
	for _, m := range ms {
		if m.key != "execute" {
			continue
		}
		var name string
		if m.val[0] != '"' || json.Unmarshal(m.val, &name) != nil {
			return false
		}
		c := d.byName[name]
		return c != nil && c.inline && d.enabled(c)
	}
	return false
}

// handle runs one request and returns its reply (the zero reply when none
// is due: a success of a command without success response).
func (d *Dialect) handle(ctx context.Context, it item) reply {
	if it.err != nil {
		return reply{line: encodeError(it.err, nil)}
	}
	ms, qerr := members(it.obj)
	if qerr != nil {
		return reply{line: encodeError(qerr, nil)}
	}
	var id, args []byte
	name := ""
	hasExecute := false
	for _, m := range ms {
		if m.key == "id" {
			id = m.val
		}
	}
	for _, m := range ms {
		switch m.key {
		case "execute":
			if m.val[0] != '"' || json.Unmarshal(m.val, &name) != nil {
				return reply{line: encodeError(Errorf("QMP input member 'execute' must be a string"), id)}
			}
			hasExecute = true
		case "arguments":
			if m.val[0] != '{' {
				return reply{line: encodeError(Errorf("QMP input member 'arguments' must be an object"), id)}
			}
			args = m.val
		case "id":
		default:
			return reply{line: encodeError(Errorf("QMP input member '%s' is unexpected", m.key), id)}
		}
	}
	if !hasExecute {
		return reply{line: encodeError(Errorf("QMP input lacks member 'execute'"), id)}
	}
	c := d.byName[name]
	if c == nil {
		if qapi.Known(name) {
			return reply{line: encodeError(errDisabled(name), id)}
		}
		return reply{line: encodeError(errNotFound(name), id)}
	}
	if !d.enabled(c) {
		return reply{line: encodeError(errDisabled(name), id)}
	}
	d.log.Debug("qga command", "command", name)
	if len(args) > 64<<10 {
		// Decoding copies big arguments (a guest-file-write's base64
		// string, then its bytes).
		if err := server.Reserve(ctx, 2*int64(len(args))); err != nil {
			return reply{line: encodeError(asError(err), id)}
		}
	}
	result, err := d.call(ctx, c, args)
	if err != nil {
		qe := asError(err)
		d.log.Debug("qga command failed", "command", name, "class", qe.Class, "desc", qe.Desc)
		return reply{line: encodeError(qe, id)}
	}
	if c.NoSuccessResponse {
		return reply{}
	}
	if sr, ok := result.(streamedReturn); ok && !c.delimited {
		var tail bytes.Buffer
		writeID(&tail, id)
		tail.WriteString("}\n")
		return reply{line: []byte(`{"return":`), body: sr, tail: tail.Bytes()}
	}
	line, err := encodeReturn(result, id, c.delimited)
	if err != nil {
		d.log.Error("qga: cannot encode a reply", "command", name, "err", err)
		return reply{line: encodeError(Errorf("cannot encode the reply: %v", err), id)}
	}
	return reply{line: line}
}

// call runs the handler; a panic is an error reply, not a dead agent.
func (d *Dialect) call(ctx context.Context, c *Command, args []byte) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("qga: command panicked", "command", c.Name, "panic", r, "stack", string(debug.Stack()))
			result, err = nil, Errorf("internal error in %s", c.Name)
		}
	}()
	return c.Handler(ctx, args)
}

// encodeReturn writes {"return":RESULT,"id":ID}\n, with 0xFF first when
// delimited.
func encodeReturn(result any, id []byte, delimited bool) ([]byte, error) {
	var b bytes.Buffer
	if delimited {
		b.WriteByte(resetByte)
	}
	b.WriteString(`{"return":`)
	if result == nil {
		b.WriteString("{}")
	} else {
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(result); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	writeID(&b, id)
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// encodeError writes {"error":{"class":C,"desc":D},"id":ID}\n.
func encodeError(e *Error, id []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"error":{"class":`)
	writeString(&b, e.Class)
	b.WriteString(`,"desc":`)
	writeString(&b, e.Desc)
	b.WriteByte('}')
	writeID(&b, id)
	b.WriteString("}\n")
	return b.Bytes()
}

func writeID(b *bytes.Buffer, id []byte) {
	if id == nil {
		return
	}
	b.WriteString(`,"id":`)
	if err := json.Compact(b, id); err != nil {
		b.WriteString("null") // cannot happen: id comes from valid JSON
	}
}

func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	b.Truncate(b.Len() - 1)
}

// session is the state of one ServeConn: what must end with it.
type session struct {
	d       *Dialect
	mu      sync.Mutex
	closers []func()
	files   *fileTable // guest-file handles, made on first use
}

func newSession(d *Dialect) *session { return &session{d: d} }

// onClose registers fn to run when the session ends.
func (s *session) onClose(fn func()) {
	s.mu.Lock()
	s.closers = append(s.closers, fn)
	s.mu.Unlock()
}

func (s *session) close() {
	s.mu.Lock()
	fns := s.closers
	s.closers = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

type sessionKey struct{}

func withSession(ctx context.Context, s *session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// sessionOf returns the session ctx belongs to, or nil outside ServeConn.
func sessionOf(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}
