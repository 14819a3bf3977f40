package server

import (
	"context"
	"sync"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// DefaultBudgetWait is how long a request waits for room in the memory
// budget before it is refused.
const DefaultBudgetWait = 10 * time.Second

// Budget bounds the memory that requests and replies in flight hold
// together, across all connections and both dialects (config
// max_memory_bytes): request lines assembled beyond the read buffer, the
// params of running requests, file_read and guest-file-read replies until
// they are written, batch replies, guest-exec output kept for its host.
// Memory is taken from it before it is allocated; what cannot get room
// within the wait is refused with a clear error instead of the
// agent growing. A nil *Budget is unbounded.
//
// Requests as they come in (lines being assembled, then the lines of the
// requests running) may take at most half of the budget: slow or idle
// hosts holding partial lines cannot take the room replies need.
type Budget struct {
	limit int64
	wait  time.Duration

	mu    sync.Mutex
	used  int64
	lines int64         // part of used held by request input
	freed chan struct{} // closed and replaced whenever memory is given back
}

// NewBudget returns a budget of limit bytes; a request waits up to wait
// (DefaultBudgetWait if 0) for room.
func NewBudget(limit int64, wait time.Duration) *Budget {
	if wait <= 0 {
		wait = DefaultBudgetWait
	}
	return &Budget{limit: limit, wait: wait, freed: make(chan struct{})}
}

// Limit returns the budget's size in bytes (0 for a nil budget).
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// InUse returns the bytes currently taken.
func (b *Budget) InUse() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// lineLimit is the share of the budget request input may hold.
func (b *Budget) lineLimit() int64 { return b.limit / 2 }

// tryTake takes n bytes if they fit now.
func (b *Budget) tryTake(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// take takes n bytes, waiting up to the budget's wait (or until ctx or
// stop ends) for others to give memory back. The error says why it failed.
func (b *Budget) take(ctx context.Context, stop <-chan struct{}, n int64) error {
	return b.takeKind(ctx, stop, n, false)
}

// takeKind is take; line marks request input, bounded to lineLimit.
func (b *Budget) takeKind(ctx context.Context, stop <-chan struct{}, n int64, line bool) error {
	if b == nil || n <= 0 {
		return nil
	}
	if n > b.limit || (line && n > b.lineLimit()) {
		return b.refusal(n, false)
	}
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.used+n <= b.limit && (!line || b.lines+n <= b.lineLimit()) {
			b.used += n
			if line {
				b.lines += n
			}
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(b.wait)
			defer timer.Stop()
		}
		var done <-chan struct{}
		if ctx != nil {
			done = ctx.Done()
		}
		select {
		case <-freed:
		case <-timer.C:
			return b.refusal(n, true)
		case <-done:
			return ctx.Err()
		case <-stop:
			return errStopped
		}
	}
}

// give returns n bytes.
func (b *Budget) give(n int64) { b.giveKind(n, false) }

// giveKind is give; line returns request input's bytes.
func (b *Budget) giveKind(n int64, line bool) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if line {
		b.lines -= n
	}
	if b.used < 0 {
		panic("server: memory budget released more than it took")
	}
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// BudgetError is the refusal of a request that does not fit in the memory
// budget; it is sent as -32000 in protocol 1.0 (and as a GenericError in the
// QGA dialect) and the agent goes on.
type BudgetError struct {
	Need, Limit int64
	Waited      time.Duration // 0: the request alone is larger than the budget
}

func (e *BudgetError) Error() string {
	if e.Waited == 0 {
		return "the request needs " + itoa(e.Need) + " bytes of memory, more than the agent's max_memory_bytes (" + itoa(e.Limit) + ")"
	}
	return "the agent's memory budget (max_memory_bytes " + itoa(e.Limit) + ") stayed in use by other requests for " +
		e.Waited.String() + "; this request needs " + itoa(e.Need) + " bytes: retry later or send fewer large requests at once"
}

// ProtocolError converts the refusal for a protocol 1.0 reply.
func (e *BudgetError) ProtocolError() *protocol.Error {
	return &protocol.Error{Code: protocol.CodeCommandFailed, Message: e.Error()}
}

func (b *Budget) refusal(n int64, waited bool) error {
	e := &BudgetError{Need: n, Limit: b.limit}
	if waited {
		e.Waited = b.wait
	}
	return e
}

type stoppedError struct{}

func (stoppedError) Error() string { return "the connection is closing" }

var errStopped error = stoppedError{}

func itoa(n int64) string {
	var buf [20]byte
	i := len(buf)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return string(buf[i:])
}

// Hold is memory one request (or one batch, or one QGA command) has taken
// from a budget; it is all given back by Release, once the reply is written.
//
// A hold that was released takes nothing more: a handler that goes on after
// its reply was sent (a file operation past its deadline) is refused
// instead of leaking budget.
type Hold struct {
	b      *Budget
	mu     sync.Mutex
	n      int64
	lineN  int64 // request input adopted (Budget.Adopt), within the input share
	closed bool
}

// NewHold returns an empty hold on b (which may be nil: unbounded).
func (b *Budget) NewHold() *Hold { return &Hold{b: b} }

// Take adds n bytes to the hold, waiting for room as Budget does.
func (h *Hold) Take(ctx context.Context, n int64) error {
	if h == nil {
		return nil
	}
	if err := h.b.take(ctx, nil, n); err != nil {
		return err
	}
	if !h.add(n) {
		return errStopped
	}
	return nil
}

// TryTake adds n bytes to the hold if they fit now.
func (h *Hold) TryTake(n int64) bool {
	if h == nil {
		return true
	}
	if !h.b.tryTake(n) {
		return false
	}
	return h.add(n)
}

// add records n bytes already taken from the budget; after Release they
// are given back at once and add reports false.
func (h *Hold) add(n int64) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.b.give(n)
		return false
	}
	h.n += n
	h.mu.Unlock()
	return true
}

// Give returns n of the hold's bytes early (a buffer dropped before the reply).
func (h *Hold) Give(n int64) {
	if h == nil {
		return
	}
	h.mu.Lock()
	n = min(n, h.n)
	h.n -= n
	h.mu.Unlock()
	h.b.give(n)
}

// Release gives all of the hold's memory back.
func (h *Hold) Release() {
	if h == nil {
		return
	}
	h.mu.Lock()
	n, ln := h.n, h.lineN
	h.n, h.lineN = 0, 0
	h.closed = true
	h.mu.Unlock()
	h.b.give(n)
	h.b.giveKind(ln, true)
}

// detach takes the hold's bytes out of it, still taken from the budget,
// for another hold to add.
func (h *Hold) detach() int64 {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.n
	h.n = 0
	return n
}

// Held returns the bytes the hold has.
func (h *Hold) Held() int64 {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

type holdKey struct{}

// WithHold returns a context whose Reserve calls take from h.
func WithHold(ctx context.Context, h *Hold) context.Context {
	return context.WithValue(ctx, holdKey{}, h)
}

// Reserve takes n bytes from the memory budget for the request whose
// handler got ctx, before the handler allocates them; they are given back
// once its reply is written. It waits for room and returns a *BudgetError
// when there is none. Without a budget in ctx (a handler called directly)
// it does nothing.
func Reserve(ctx context.Context, n int64) error {
	h, _ := ctx.Value(holdKey{}).(*Hold)
	if h == nil {
		return nil
	}
	return h.Take(ctx, n)
}

// Unreserve gives back n bytes reserved with Reserve before the reply is
// written (a buffer the handler dropped).
func Unreserve(ctx context.Context, n int64) {
	h, _ := ctx.Value(holdKey{}).(*Hold)
	h.Give(n)
}

// Acquire takes n bytes for a buffer that is not a request's (a partial
// request being read), waiting for room as long as the budget's wait, or
// until stop is closed. Give them back with Free.
// They count against the request input's share (half the budget).
func (b *Budget) Acquire(stop <-chan struct{}, n int64) error { return b.takeKind(nil, stop, n, true) }

// Free gives back n bytes taken with Acquire.
func (b *Budget) Free(n int64) { b.giveKind(n, true) }

// Regrow moves buf into a new buffer of capacity c (same length and bytes),
// taking c bytes with Acquire first and then giving back the *charged bytes
// the old buffer held; *charged becomes c. On a refusal buf and *charged are
// left as they were.
func (b *Budget) Regrow(stop <-chan struct{}, buf []byte, charged *int64, c int) ([]byte, error) {
	if err := b.Acquire(stop, int64(c)); err != nil {
		return buf, err
	}
	nb := make([]byte, len(buf), c)
	copy(nb, buf)
	b.Free(*charged)
	*charged = int64(c)
	return nb, nil
}

// Adopt returns a hold owning n bytes already taken with Acquire (a
// request whose buffer now belongs to its handler).
func (b *Budget) Adopt(n int64) *Hold {
	h := b.NewHold()
	h.lineN = n
	return h
}
