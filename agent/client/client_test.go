package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/client/clienttest"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// noResend keeps a resync from re-sending sync during a scripted test.
var noResend = client.WithResyncInterval(time.Hour)

func dial(t *testing.T, srv *clienttest.Server, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), srv.Path, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type pingOutcome struct {
	res protocol.PingResult
	err error
}

// goPing runs a ping in the background.
func goPing(c *client.Client, ctx context.Context) <-chan pingOutcome {
	ch := make(chan pingOutcome, 1)
	go func() {
		r, err := c.Ping(ctx)
		ch <- pingOutcome{r, err}
	}()
	return ch
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestCallEndsAtDeadline(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, noResend)
	conn := srv.Accept()

	done := goPing(c, shortCtx(t))
	req := conn.Next() // read, never answered
	if req.Method != protocol.MethodPing {
		t.Fatalf("method = %q, want ping", req.Method)
	}
	out := <-done
	if !errors.Is(out.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", out.err)
	}
	if errors.Is(out.err, client.ErrDisconnected) {
		t.Fatalf("a timeout is not a disconnection: %v", out.err)
	}
}

func TestDefaultCallTimeoutApplies(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, noResend, client.WithCallTimeout(50*time.Millisecond))
	conn := srv.Accept()
	done := goPing(c, context.Background())
	conn.Next()
	if out := <-done; !errors.Is(out.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded from the default call timeout", out.err)
	}
}

func TestOutOfOrderRepliesMatchByID(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv)
	conn := srv.Accept()

	ctx := context.Background()
	sys := make(chan error, 1)
	var info protocol.SystemInfo
	go func() {
		var err error
		info, err = c.SystemInfo(ctx)
		sys <- err
	}()
	png := goPing(c, ctx)

	reqs := map[string]clienttest.Request{}
	for range 2 {
		r := conn.Next()
		reqs[r.Method] = r
	}
	// Answer in the opposite order of... whatever order they came: ping last.
	conn.Reply(reqs[protocol.MethodGetSystemInfo].ID, protocol.SystemInfo{Hostname: "guest1"})
	conn.Reply(reqs[protocol.MethodPing].ID, protocol.PingResult{Pong: true, Timestamp: 42})
	if err := <-sys; err != nil || info.Hostname != "guest1" {
		t.Fatalf("SystemInfo = %+v, %v; want hostname guest1", info, err)
	}
	if out := <-png; out.err != nil || out.res.Timestamp != 42 {
		t.Fatalf("Ping = %+v, %v; want timestamp 42", out.res, out.err)
	}

	// And the other way round.
	png = goPing(c, ctx)
	go func() {
		var err error
		info, err = c.SystemInfo(ctx)
		sys <- err
	}()
	for range 2 {
		r := conn.Next()
		reqs[r.Method] = r
	}
	conn.Reply(reqs[protocol.MethodPing].ID, protocol.PingResult{Pong: true, Timestamp: 43})
	conn.Reply(reqs[protocol.MethodGetSystemInfo].ID, protocol.SystemInfo{Hostname: "guest2"})
	if out := <-png; out.err != nil || out.res.Timestamp != 43 {
		t.Fatalf("Ping = %+v, %v; want timestamp 43", out.res, out.err)
	}
	if err := <-sys; err != nil || info.Hostname != "guest2" {
		t.Fatalf("SystemInfo = %+v, %v; want hostname guest2", info, err)
	}
}

// expectSync reads the next request and checks it is a resync: 0xFF first,
// method sync, params.id equal to the request id, in the sync id range.
func expectSync(t *testing.T, conn *clienttest.Conn) (clienttest.Request, int64) {
	t.Helper()
	r := conn.Next()
	if r.Method != protocol.MethodSync {
		t.Fatalf("after a timeout got %q, want sync", r.Method)
	}
	if !r.AfterResyncByte {
		t.Errorf("sync was not preceded by a 0xFF byte")
	}
	var p protocol.SyncParams
	if err := json.Unmarshal(r.Params, &p); err != nil {
		t.Fatalf("sync params %s: %v", r.Params, err)
	}
	if string(r.ID) != fmt.Sprint(p.ID) {
		t.Errorf("sync id %s differs from params.id %d", r.ID, p.ID)
	}
	if p.ID < 1<<40 || p.ID >= 1<<53 {
		t.Errorf("sync id %d outside [2^40, 2^53)", p.ID)
	}
	return r, p.ID
}

func TestResyncAfterTimeoutDropsLateReply(t *testing.T) {
	for _, staleFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("stale_reply_before_sync_reply=%v", staleFirst), func(t *testing.T) {
			srv := clienttest.NewServer(t)
			c := dial(t, srv, noResend)
			conn := srv.Accept()

			first := goPing(c, shortCtx(t))
			late := conn.Next()
			if out := <-first; !errors.Is(out.err, context.DeadlineExceeded) {
				t.Fatalf("first ping: %v, want DeadlineExceeded", out.err)
			}
			syncReq, _ := expectSync(t, conn)

			second := goPing(c, context.Background()) // waits for the resync
			if staleFirst {
				conn.Reply(late.ID, protocol.PingResult{Pong: true, Timestamp: 1})
				conn.ReplySync(syncReq)
			} else {
				conn.ReplySync(syncReq)
				conn.Reply(late.ID, protocol.PingResult{Pong: true, Timestamp: 1})
			}
			next := conn.Next()
			if next.Method != protocol.MethodPing || string(next.ID) == string(late.ID) {
				t.Fatalf("after resync got %s id %s; want a ping with a new id (late id %s)", next.Method, next.ID, late.ID)
			}
			conn.Reply(next.ID, protocol.PingResult{Pong: true, Timestamp: 2})
			out := <-second
			if out.err != nil {
				t.Fatalf("second ping: %v", out.err)
			}
			if out.res.Timestamp != 2 {
				t.Fatalf("second ping got timestamp %d: the late reply to the timed-out call was taken for it", out.res.Timestamp)
			}
		})
	}
}

func TestResyncDeliversRepliesOfLiveCalls(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, noResend)
	conn := srv.Accept()

	longCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var info protocol.SystemInfo
	sys := make(chan error, 1)
	go func() {
		var err error
		info, err = c.SystemInfo(longCtx)
		sys <- err
	}()
	live := conn.Next()

	short := goPing(c, shortCtx(t))
	conn.Next()
	if out := <-short; !errors.Is(out.err, context.DeadlineExceeded) {
		t.Fatalf("ping: %v, want DeadlineExceeded", out.err)
	}
	syncReq, _ := expectSync(t, conn)
	// The live call's reply arrives in the middle of the resync.
	conn.Reply(live.ID, protocol.SystemInfo{Hostname: "still-here"})
	if err := <-sys; err != nil || info.Hostname != "still-here" {
		t.Fatalf("SystemInfo during resync = %+v, %v", info, err)
	}
	conn.ReplySync(syncReq)
}

func TestResyncResendsUntilAnswered(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, client.WithResyncInterval(20*time.Millisecond))
	conn := srv.Accept()

	first := goPing(c, shortCtx(t))
	conn.Next()
	<-first
	sync1, id1 := expectSync(t, conn)
	_, id2 := expectSync(t, conn) // nobody answered: sent again
	if id1 == id2 {
		t.Fatalf("re-sent sync reuses id %d", id1)
	}
	second := goPing(c, context.Background())
	conn.ReplySync(sync1) // an answer to the older sync also proves the stream is in sync
	for {
		r := conn.Next()
		if r.Method == protocol.MethodSync {
			continue // sent before our answer arrived; unanswered, harmless
		}
		conn.Reply(r.ID, protocol.PingResult{Pong: true, Timestamp: 7})
		break
	}
	if out := <-second; out.err != nil || out.res.Timestamp != 7 {
		t.Fatalf("ping after resync = %+v, %v", out.res, out.err)
	}
}

func TestCallDuringResyncFailsWithContext(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, noResend)
	conn := srv.Accept()
	first := goPing(c, shortCtx(t))
	conn.Next()
	<-first
	expectSync(t, conn) // never answered
	out := <-goPing(c, shortCtx(t))
	if !errors.Is(out.err, context.DeadlineExceeded) || !strings.Contains(out.err.Error(), "resynchronise") {
		t.Fatalf("err = %v, want a DeadlineExceeded naming the resync", out.err)
	}
}

func TestReconnectAfterServerCloses(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, noResend)
	conn1 := srv.Accept()

	pending := goPing(c, context.Background())
	old := conn1.Next()
	if !old.AfterResyncByte {
		t.Errorf("a new connection should start with 0xFF")
	}
	conn1.Close()
	out := <-pending
	if !errors.Is(out.err, client.ErrDisconnected) {
		t.Fatalf("pending call: %v, want ErrDisconnected", out.err)
	}

	next := goPing(c, context.Background())
	conn2 := srv.Accept()
	r := conn2.Next()
	if !r.AfterResyncByte {
		t.Errorf("the new connection should start with 0xFF")
	}
	if string(r.ID) == string(old.ID) {
		t.Fatalf("id %s reused after reconnecting", r.ID)
	}
	// A reply the agent wrote for the old connection lands on the new one.
	conn2.Reply(old.ID, protocol.PingResult{Pong: true, Timestamp: 1})
	conn2.Reply(r.ID, protocol.PingResult{Pong: true, Timestamp: 2})
	if out := <-next; out.err != nil || out.res.Timestamp != 2 {
		t.Fatalf("ping after reconnect = %+v, %v; want timestamp 2", out.res, out.err)
	}
}

func TestReconnectGivesUpAtDeadline(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, client.WithReconnectBackoff(5*time.Millisecond, 10*time.Millisecond))
	conn := srv.Accept()
	srv.Close() // stops listening and drops the connection
	conn.ReadErr()
	_, err := c.Ping(shortCtx(t))
	// The first ping may be sent on the dying connection (ErrDisconnected) or
	// find it dead and fail to reconnect (ErrDisconnected + DeadlineExceeded).
	if !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("err = %v, want ErrDisconnected", err)
	}
	_, err = c.Ping(shortCtx(t))
	if !errors.Is(err, client.ErrDisconnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrDisconnected and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), srv.Path) {
		t.Errorf("error %q does not name the socket", err)
	}
}

func TestDialNamesSocket(t *testing.T) {
	path := t.TempDir() + "/missing.sock"
	_, err := client.Dial(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Dial(%s) = %v, want an error naming the path", path, err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	srv := clienttest.NewServer(t)
	srv.Serve(func(ctx context.Context, method string, params json.RawMessage) (any, error) {
		var p protocol.FileReadParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		return protocol.FileReadResult{Content: p.Path, Encoding: "utf8"}, nil
	})
	c := dial(t, srv)
	var wg sync.WaitGroup
	errs := make(chan error, 16*40)
	for g := range 16 {
		wg.Go(func() {
			for i := range 40 {
				want := fmt.Sprintf("/tmp/%d/%d", g, i)
				r, err := c.ReadFile(context.Background(), want, "")
				if err != nil {
					errs <- err
					return
				}
				if r.Content != want {
					errs <- fmt.Errorf("asked for %s, got the reply for %s", want, r.Content)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAgentErrorKeepsCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"permission", protocol.Errorf(protocol.CodePermissionDenied, `path "/etc/shadow" is outside allowed_read_paths`),
			protocol.CodePermissionDenied, `path "/etc/shadow" is outside allowed_read_paths`},
		{"not found", protocol.Errorf(protocol.CodeNotFound, "no such file"), protocol.CodeNotFound, "no such file"},
		{"internal", errors.New("boom"), protocol.CodeInternalError, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := clienttest.NewServer(t)
			srv.Serve(func(context.Context, string, json.RawMessage) (any, error) { return nil, tt.err })
			c := dial(t, srv)
			_, err := c.ReadFile(context.Background(), "/etc/shadow", "")
			var perr *protocol.Error
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v (%T), want *protocol.Error", err, err)
			}
			if perr.Code != tt.code || perr.Message != tt.msg {
				t.Fatalf("got %d %q, want %d %q", perr.Code, perr.Message, tt.code, tt.msg)
			}
		})
	}
}

func TestExecTimeoutErrorCarriesOutput(t *testing.T) {
	srv := clienttest.NewServer(t)
	srv.Serve(func(context.Context, string, json.RawMessage) (any, error) {
		return nil, protocol.Errorf(protocol.CodeTimeout, "command timed out after 1s").
			WithData(protocol.ExecResult{ExitCode: -1, Stdout: "partial\n"})
	})
	c := dial(t, srv)
	_, err := c.Exec(context.Background(), protocol.ExecParams{Command: "sleep", Args: []string{"9"}})
	out, ok := client.ExecErrorOutput(err)
	if !ok || out.Stdout != "partial\n" {
		t.Fatalf("ExecErrorOutput(%v) = %+v, %v", err, out, ok)
	}
}

func TestUnusableLinesAreDropped(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, client.WithMaxResponseBytes(1024))
	conn := srv.Accept()
	done := goPing(c, context.Background())
	r := conn.Next()
	conn.WriteLine([]byte("not json"))
	conn.WriteLine([]byte(`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1},"id":99999}`))
	conn.WriteLine([]byte(`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1},"id":"` + string(r.ID) + `"}`))
	conn.WriteLine([]byte(`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error"},"id":null}`))
	conn.WriteLine([]byte(`{"jsonrpc":"2.0","result":"` + strings.Repeat("x", 5000) + `","id":` + string(r.ID) + `}`))
	conn.Reply(r.ID, protocol.PingResult{Pong: true, Timestamp: 5})
	if out := <-done; out.err != nil || out.res.Timestamp != 5 {
		t.Fatalf("ping = %+v, %v; want timestamp 5 from the only valid reply", out.res, out.err)
	}
}

func TestCloseFailsPendingAndLaterCalls(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv)
	conn := srv.Accept()
	pending := goPing(c, context.Background())
	conn.Next()
	c.Close()
	if out := <-pending; !errors.Is(out.err, client.ErrClosed) {
		t.Fatalf("pending call: %v, want ErrClosed", out.err)
	}
	if _, err := c.Ping(context.Background()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
	if err := conn.ReadErr(); err == nil {
		t.Fatalf("connection still open after Close")
	}
}

func TestWaitReadyUntilAgentAnswers(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv,
		client.WithReadyPolling(5*time.Millisecond, 30*time.Millisecond),
		client.WithResyncInterval(20*time.Millisecond))
	conn := srv.Accept()
	ready := make(chan error, 1)
	go func() { ready <- c.WaitReady(context.Background()) }()

	// The guest agent is not running: the first requests go unanswered.
	for ignored := 0; ignored < 3; ignored++ {
		conn.Next()
	}
	// Now it runs and answers whatever comes.
	for {
		select {
		case err := <-ready:
			if err != nil {
				t.Fatalf("WaitReady: %v", err)
			}
			return
		default:
		}
		r := conn.Next()
		if r.Method == protocol.MethodSync {
			conn.ReplySync(r)
		} else {
			conn.Reply(r.ID, protocol.PingResult{Pong: true, Timestamp: 1})
			if err := <-ready; err != nil {
				t.Fatalf("WaitReady: %v", err)
			}
			return
		}
	}
}

func TestWaitReadyGivesUp(t *testing.T) {
	srv := clienttest.NewServer(t)
	c := dial(t, srv, client.WithReadyPolling(5*time.Millisecond, 10*time.Millisecond))
	srv.Accept()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady = %v, want DeadlineExceeded", err)
	}
}

func TestTypedHelpersSendTheContract(t *testing.T) {
	type seen struct {
		method string
		params string
	}
	got := make(chan seen, 1)
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	srv := clienttest.NewServer(t)
	srv.Serve(func(_ context.Context, method string, params json.RawMessage) (any, error) {
		got <- seen{method, string(params)}
		switch method {
		case protocol.MethodFileRead:
			return protocol.FileReadResult{Content: base64.StdEncoding.EncodeToString(binary), SizeBytes: 6, Encoding: "base64"}, nil
		case protocol.MethodFileWrite:
			return protocol.FileWriteResult{BytesWritten: 6, Path: "/tmp/b"}, nil
		case protocol.MethodExecCommand:
			return protocol.ExecResult{ExitCode: 3, Stdout: "out"}, nil
		case protocol.MethodShutdown, protocol.MethodReboot:
			return protocol.PowerResult{Initiated: true, Message: "ok"}, nil
		}
		return map[string]any{}, nil
	})
	c := dial(t, srv)
	ctx := context.Background()
	five := 5
	tests := []struct {
		name       string
		call       func() error
		method     string
		wantParams string
	}{
		{"ReadFileBytes", func() error {
			b, err := c.ReadFileBytes(ctx, "/tmp/b")
			if err == nil && string(b) != string(binary) {
				err = fmt.Errorf("decoded %q, want %q", b, binary)
			}
			return err
		}, protocol.MethodFileRead, `{"path":"/tmp/b","encoding":"base64"}`},
		{"WriteFileBytes", func() error {
			_, err := c.WriteFileBytes(ctx, "/tmp/b", binary, "0600")
			return err
		}, protocol.MethodFileWrite, `{"path":"/tmp/b","content":"AAEC//4K","encoding":"base64","permissions":"0600"}`},
		{"Exec", func() error {
			r, err := c.Exec(ctx, protocol.ExecParams{Command: "ls", Args: []string{"-l", "/"}, TimeoutSeconds: &five})
			if err == nil && (r.ExitCode != 3 || r.Stdout != "out") {
				err = fmt.Errorf("result %+v", r)
			}
			return err
		}, protocol.MethodExecCommand, `{"command":"ls","args":["-l","/"],"timeout_seconds":5}`},
		{"Reboot", func() error {
			_, err := c.Reboot(ctx, protocol.PowerParams{Force: true})
			return err
		}, protocol.MethodReboot, `{"force":true}`},
		{"Shutdown", func() error {
			_, err := c.Shutdown(ctx, protocol.PowerParams{})
			return err
		}, protocol.MethodShutdown, `{}`},
		{"DiskUsage", func() error {
			_, err := c.DiskUsage(ctx)
			return err
		}, protocol.MethodGetDiskUsage, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != nil {
				t.Fatal(err)
			}
			s := <-got
			if s.method != tt.method || s.params != tt.wantParams {
				t.Fatalf("sent %s %s, want %s %s", s.method, s.params, tt.method, tt.wantParams)
			}
		})
	}
}

func TestSyncMethod(t *testing.T) {
	srv := clienttest.NewServer(t)
	srv.Serve(func(context.Context, string, json.RawMessage) (any, error) { return nil, nil })
	c := dial(t, srv)
	if err := c.Sync(context.Background(), 123456); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}
