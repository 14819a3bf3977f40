package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBudgetTakeAndGive(t *testing.T) {
	tests := []struct {
		name     string
		held     int64 // taken before
		take     int64
		line     bool
		wantErr  bool
		wantWait bool // refused after waiting (not at once)
	}{
		{"fits", 0, 60, false, false, false},
		{"fits exactly", 40, 60, false, false, false},
		{"larger than the whole budget", 0, 101, false, true, false},
		{"no room within the wait", 50, 60, false, true, true},
		{"input within its half", 0, 50, true, false, false},
		{"input beyond its half", 0, 51, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(100, 20*time.Millisecond)
			if !b.tryTake(tc.held) {
				t.Fatal("setup: tryTake failed")
			}
			err := b.takeKind(context.Background(), nil, tc.take, tc.line)
			var be *BudgetError
			switch {
			case tc.wantErr && !errors.As(err, &be):
				t.Fatalf("take(%d) = %v, want a *BudgetError", tc.take, err)
			case !tc.wantErr && err != nil:
				t.Fatalf("take(%d) = %v", tc.take, err)
			case tc.wantErr && (be.Waited != 0) != tc.wantWait:
				t.Errorf("waited %v, want waiting %v", be.Waited, tc.wantWait)
			case tc.wantErr && !strings.Contains(err.Error(), "max_memory_bytes"):
				t.Errorf("error %q does not name max_memory_bytes", err)
			}
			want := tc.held
			if !tc.wantErr {
				want += tc.take
			}
			if got := b.InUse(); got != want {
				t.Errorf("in use %d, want %d", got, want)
			}
		})
	}
}

func TestBudgetWaiterGetsFreedMemory(t *testing.T) {
	b := NewBudget(100, 10*time.Second)
	h := b.NewHold()
	if err := h.Take(context.Background(), 80); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.take(context.Background(), nil, 50) }()
	select {
	case err := <-got:
		t.Fatalf("take returned %v while the memory was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	h.Release()
	if err := <-got; err != nil {
		t.Fatalf("take after release: %v", err)
	}
	// A released hold takes nothing more (a handler past its reply).
	if err := h.Take(context.Background(), 10); err == nil || b.InUse() != 50 {
		t.Errorf("take on a released hold = %v, in use %d; want an error and 50", err, b.InUse())
	}
}

// A request line that does not fit in the budget's input share is refused
// with -32000 naming max_memory_bytes, its rest is skipped, and the
// connection goes on; a handler's reservation beyond the budget is refused
// the same way; afterwards all memory is back.
func TestServerBudgetRefusals(t *testing.T) {
	budget := NewBudget(1<<20, 50*time.Millisecond)
	handlers := testHandlers()
	handlers["reserve"] = func(ctx context.Context, params json.RawMessage) (any, error) {
		var n int64
		if err := json.Unmarshal(params, &[]any{&n}); err != nil {
			return nil, err
		}
		if err := Reserve(ctx, n); err != nil {
			return nil, err
		}
		return n, nil
	}
	srv := New(handlers, Options{Budget: budget})
	a, b := socketPair(t)
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), b); b.Close() }()

	big := `{"jsonrpc":"2.0","method":"echo","id":1,"params":["` + strings.Repeat("x", 600<<10) + `"]}`
	small := `{"jsonrpc":"2.0","method":"echo","id":2,"params":["` + strings.Repeat("y", 100<<10) + `"]}`
	go func() {
		fmt.Fprintf(a, "%s\n%s\n", big, small)
		fmt.Fprintln(a, `{"jsonrpc":"2.0","method":"reserve","id":3,"params":[2000000]}`)
		fmt.Fprintln(a, `{"jsonrpc":"2.0","method":"reserve","id":4,"params":[300000]}`)
	}()
	r := bufio.NewReaderSize(a, 1<<20)
	type reply struct {
		ID     int             `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	got := map[string]reply{}
	for range 4 {
		a.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var rp reply
		if err := json.Unmarshal(line, &rp); err != nil {
			t.Fatalf("reply %.80q: %v", line, err)
		}
		got[fmt.Sprint(rp.ID)] = rp
	}
	for _, tc := range []struct {
		id      string
		refused bool
	}{{"0", true}, {"2", false}, {"3", true}, {"4", false}} {
		rp, ok := got[tc.id]
		switch {
		case !ok:
			t.Errorf("no reply with id %s (got %v)", tc.id, got)
		case tc.refused && (rp.Error == nil || rp.Error.Code != -32000 || !strings.Contains(rp.Error.Message, "max_memory_bytes")):
			t.Errorf("id %s: want -32000 naming max_memory_bytes, got %+v %s", tc.id, rp.Error, rp.Result)
		case !tc.refused && rp.Error != nil:
			t.Errorf("id %s: %+v", tc.id, rp.Error)
		}
	}
	a.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes of the budget still in use after the connection ended", n)
	}
}

// Every way a request ends gives its memory back: a long line answered
// inline, refused, run alone, run in a batch, a notification.
func TestBudgetReturnedAfterEveryKindOfRequest(t *testing.T) {
	pad := strings.Repeat("x", 100<<10) // past the read buffer: the line is charged
	tests := []struct {
		name, line string
		replies    int
	}{
		{"inline ping with a long line", `{"jsonrpc":"2.0","method":"ping","id":1,"params":["` + pad + `"]}`, 1},
		{"echo with a long line", `{"jsonrpc":"2.0","method":"echo","id":1,"params":["` + pad + `"]}`, 1},
		{"notification with a long line", `{"jsonrpc":"2.0","method":"echo","params":["` + pad + `"]}`, 0},
		{"unknown method with a long line", `{"jsonrpc":"2.0","method":"nope","id":1,"params":["` + pad + `"]}`, 1},
		{"duplicate member with a long line", `{"jsonrpc":"2.0","method":"echo","method":"echo","id":1,"params":["` + pad + `"]}`, 1},
		{"batch with a long line", `[{"jsonrpc":"2.0","method":"echo","id":1,"params":["` + pad + `"]},{"jsonrpc":"2.0","method":"ping","id":2}]`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			budget := NewBudget(8<<20, time.Second)
			srv := New(testHandlers(), Options{Budget: budget, Inline: map[string]bool{"ping": true}})
			a, b := socketPair(t)
			defer a.Close()
			done := make(chan error, 1)
			go func() { done <- srv.ServeConn(context.Background(), b); b.Close() }()
			go fmt.Fprintf(a, "%s\n%s", tc.line, pingSentinel)
			r := bufio.NewReaderSize(a, 1<<20)
			for i := 0; i < tc.replies+1; i++ {
				a.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := r.ReadBytes('\n'); err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
			}
			a.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n := budget.InUse(); n != 0 {
				t.Errorf("%d bytes of the budget still in use", n)
			}
		})
	}
}
