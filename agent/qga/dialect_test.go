//go:build !windows

package qga

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// chunks is a connection whose reads return the given chunks, one per Read,
// then end of file; writes are collected.
type chunks struct {
	in  [][]byte
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in[0])
	c.in[0] = c.in[0][n:]
	if len(c.in[0]) == 0 {
		c.in = c.in[1:]
	}
	return n, nil
}

func (c *chunks) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func newTestDialect(t testing.TB, cfg *config.Config, opts Options) *Dialect {
	t.Helper()
	if cfg == nil {
		cfg = config.Default()
	}
	svc := methods.New(cfg, methods.Options{HostRoot: opts.HostRoot})
	d := New(svc, cfg, opts)
	// Test commands: a command without success response, one that
	// panics, one that fails with a class and one that waits.
	d.add(Command{Name: "test-quiet", NoSuccessResponse: true, Handler: Typed(func(_ context.Context, a *struct {
		Fail bool `json:"fail,omitempty"`
	}) (any, error) {
		if a.Fail {
			return nil, errors.New("quiet command failed")
		}
		return nil, nil
	})})
	d.add(Command{Name: "test-panic", Handler: NoArgs(func(context.Context) (any, error) { panic("boom") })})
	d.add(Command{Name: "test-class", Handler: NoArgs(func(context.Context) (any, error) {
		return nil, &Error{Class: ClassDeviceNotFound, Desc: "no such thing"}
	})})
	d.add(Command{Name: "test-slow", Handler: NoArgs(func(context.Context) (any, error) {
		time.Sleep(5 * time.Millisecond)
		return "slow", nil
	})})
	return d
}

// serve runs one session over the chunks and returns what the agent wrote.
func serve(t testing.TB, d *Dialect, in ...string) string {
	t.Helper()
	c := &chunks{}
	for _, s := range in {
		c.in = append(c.in, []byte(s))
	}
	if err := d.ServeConn(context.Background(), c); err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
	return c.out.String()
}

func TestWire(t *testing.T) {
	d := newTestDialect(t, nil, Options{MaxObject: 4096})
	ping := `{"execute":"guest-ping"}`
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"ping", []string{ping}, `{"return":{}}` + "\n"},
		{"id echoed", []string{`{"execute":"guest-ping","id":"x"}`}, `{"return":{},"id":"x"}` + "\n"},
		{"id any JSON, compacted", []string{`{"id": {"a": [1, 2.5e3]}, "execute":"guest-ping"}`}, `{"return":{},"id":{"a":[1,2.5e3]}}` + "\n"},
		{"split across reads", []string{`{"execute":"guest-pi`, `ng","id`, `":1}`}, `{"return":{},"id":1}` + "\n"},
		{"split inside an escape", []string{`{"execute":"guest-\`, `u0070ing","id":"a\`, `"b"}`}, `{"return":{},"id":"a\"b"}` + "\n"},
		{"several per line, in order", []string{`{"execute":"guest-ping","id":1}{"execute":"test-slow","id":2} {"execute":"guest-ping","id":3}` + "\n"},
			`{"return":{},"id":1}` + "\n" + `{"return":"slow","id":2}` + "\n" + `{"return":{},"id":3}` + "\n"},
		{"object over lines", []string{"{\n\"execute\":\n\"guest-ping\"\r\n,\t\"id\": 9\n}\n"}, `{"return":{},"id":9}` + "\n"},
		{"0xFF drops a partial object", []string{`{"execute":"guest-pi`, "\xff", `{"execute":"guest-ping","id":3}`}, `{"return":{},"id":3}` + "\n"},
		{"0xFF inside a string", []string{`{"execute":"gu` + "\xff" + `{"execute":"guest-ping","id":4}`}, `{"return":{},"id":4}` + "\n"},
		{"0xFF alone is silent", []string{"\xff\xff", ping}, `{"return":{}}` + "\n"},
		{"sync", []string{`{"execute":"guest-sync","arguments":{"id":-5},"id":"s"}`}, `{"return":-5,"id":"s"}` + "\n"},
		{"sync-delimited", []string{"\xff" + `{"execute":"guest-sync-delimited","arguments":{"id":9223372036854775807}}`},
			"\xff" + `{"return":9223372036854775807}` + "\n"},
		{"sync-delimited after garbage", []string{`{"execute":"guest-ping", "id":`, "\xff" + `{"execute":"guest-sync-delimited","arguments":{"id":7}}`},
			"\xff" + `{"return":7}` + "\n"},
		{"unknown command", []string{`{"execute":"guest-nope","id":3}`},
			`{"error":{"class":"CommandNotFound","desc":"The command guest-nope has not been found"},"id":3}` + "\n"},
		{"schema command not implemented", []string{`{"execute":"guest-get-memory-blocks"}`},
			`{"error":{"class":"CommandNotFound","desc":"Command guest-get-memory-blocks has been disabled"}}` + "\n"},
		{"no success response", []string{`{"execute":"test-quiet","id":1}`, ping}, `{"return":{}}` + "\n"},
		{"no success response, error replied", []string{`{"execute":"test-quiet","arguments":{"fail":true},"id":1}`},
			`{"error":{"class":"GenericError","desc":"quiet command failed"},"id":1}` + "\n"},
		{"panic is an error", []string{`{"execute":"test-panic"}`, ping},
			`{"error":{"class":"GenericError","desc":"internal error in test-panic"}}` + "\n" + `{"return":{}}` + "\n"},
		{"error class kept", []string{`{"execute":"test-class"}`},
			`{"error":{"class":"DeviceNotFound","desc":"no such thing"}}` + "\n"},
		// Arguments, as qemu-ga's QObject input visitor words them.
		{"unexpected argument", []string{`{"execute":"guest-ping","arguments":{"a":1}}`},
			`{"error":{"class":"GenericError","desc":"Parameter 'a' is unexpected"}}` + "\n"},
		{"missing argument", []string{`{"execute":"guest-sync","arguments":{}}`},
			`{"error":{"class":"GenericError","desc":"Parameter 'id' is missing"}}` + "\n"},
		{"no arguments at all", []string{`{"execute":"guest-sync"}`},
			`{"error":{"class":"GenericError","desc":"Parameter 'id' is missing"}}` + "\n"},
		{"wrong type", []string{`{"execute":"guest-sync","arguments":{"id":"s"}}`},
			`{"error":{"class":"GenericError","desc":"Invalid parameter type for 'id', expected: integer"}}` + "\n"},
		{"float for int", []string{`{"execute":"guest-sync","arguments":{"id":1.0}}`},
			`{"error":{"class":"GenericError","desc":"Invalid parameter type for 'id', expected: integer"}}` + "\n"},
		{"beyond int64", []string{`{"execute":"guest-sync","arguments":{"id":9223372036854775808}}`},
			`{"error":{"class":"GenericError","desc":"Invalid parameter type for 'id', expected: integer"}}` + "\n"},
		{"null for int", []string{`{"execute":"guest-sync","arguments":{"id":null}}`},
			`{"error":{"class":"GenericError","desc":"Invalid parameter type for 'id', expected: integer"}}` + "\n"},
		// The envelope.
		{"array", []string{`[1,2]`}, `{"error":{"class":"GenericError","desc":"QMP input must be a JSON object"}}` + "\n"},
		{"number", []string{`5 `}, `{"error":{"class":"GenericError","desc":"QMP input must be a JSON object"}}` + "\n"},
		{"string", []string{`"str"`}, `{"error":{"class":"GenericError","desc":"QMP input must be a JSON object"}}` + "\n"},
		{"bad keyword, then a command", []string{`garbage {"execute":"guest-ping","id":2}`},
			`{"error":{"class":"GenericError","desc":"JSON parse error, invalid keyword 'garbage'"}}` + "\n" + `{"return":{},"id":2}` + "\n"},
		{"stray brace", []string{`}` + ping}, `{"error":{"class":"GenericError","desc":"JSON parse error, expecting value"}}` + "\n" + `{"return":{}}` + "\n"},
		{"no execute", []string{`{}`}, `{"error":{"class":"GenericError","desc":"QMP input lacks member 'execute'"}}` + "\n"},
		{"unexpected member, id echoed", []string{`{"foo":1,"id":4}`},
			`{"error":{"class":"GenericError","desc":"QMP input member 'foo' is unexpected"},"id":4}` + "\n"},
		{"exec-oob", []string{`{"execute":"guest-ping","exec-oob":"x"}`},
			`{"error":{"class":"GenericError","desc":"QMP input member 'exec-oob' is unexpected"}}` + "\n"},
		{"execute not a string", []string{`{"execute":5}`},
			`{"error":{"class":"GenericError","desc":"QMP input member 'execute' must be a string"}}` + "\n"},
		{"arguments null", []string{`{"execute":"guest-ping","arguments":null}`},
			`{"error":{"class":"GenericError","desc":"QMP input member 'arguments' must be an object"}}` + "\n"},
		{"arguments array", []string{`{"execute":"guest-ping","arguments":[]}`},
			`{"error":{"class":"GenericError","desc":"QMP input member 'arguments' must be an object"}}` + "\n"},
		{"duplicate key", []string{`{"execute":"guest-ping","execute":"guest-info"}`},
			`{"error":{"class":"GenericError","desc":"JSON parse error, duplicate key"}}` + "\n"},
		{"invalid UTF-8", []string{"{\"execute\":\"guest-ping\",\"id\":\"\xe9\"}", ping},
			`{"error":{"class":"GenericError","desc":"JSON parse error, invalid UTF-8 sequence in string"}}` + "\n" + `{"return":{}}` + "\n"},
		{"too large, skipped as it streams", []string{`{"execute":"guest-ping","id":"` + strings.Repeat("a", 5000), strings.Repeat("{", 10) + `"}`, ping},
			`{"error":{"class":"GenericError","desc":"JSON token size limit exceeded"}}` + "\n" + `{"return":{}}` + "\n"},
		{"too deep", []string{strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1), ping},
			`{"error":{"class":"GenericError","desc":"JSON nesting depth limit exceeded"}}` + "\n" + `{"return":{}}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serve(t, d, tt.in...); got != tt.want {
				t.Errorf("in %q:\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// A syntax error is one error reply; the stream goes on after it.
func TestWireSyntaxError(t *testing.T) {
	d := newTestDialect(t, nil, Options{})
	got := serve(t, d, `{"execute":}{"execute":"guest-ping"}`)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"error":{"class":"GenericError","desc":"JSON parse error, `) || lines[1] != `{"return":{}}` {
		t.Errorf("got %q", got)
	}
}

// Commands are answered in the order they came, however long each takes.
func TestWireOrder(t *testing.T) {
	d := newTestDialect(t, nil, Options{})
	var in, want strings.Builder
	for i := range 40 {
		cmd, ret := "guest-ping", "{}"
		if i%3 == 0 {
			cmd, ret = "test-slow", `"slow"`
		}
		in.WriteString(`{"execute":"` + cmd + `","id":` + itoa(i) + `}`)
		want.WriteString(`{"return":` + ret + `,"id":` + itoa(i) + "}\n")
	}
	if got := serve(t, d, in.String()); got != want.String() {
		t.Errorf("got %q\nwant %q", got, want.String())
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// disabled_methods: a QGA name disables that command; a protocol 1.0 name
// disables the commands mapped to it; guest-info shows both as disabled.
func TestDisabled(t *testing.T) {
	cfg := config.Default()
	cfg.DisabledMethods = []string{"guest-ping"}
	d := newTestDialect(t, cfg, Options{})
	d.add(Command{Name: "test-mapped", Method: "exec_command", Handler: NoArgs(func(context.Context) (any, error) { return nil, nil })})
	cfg.DisabledMethods = append(cfg.DisabledMethods, "exec_command")
	got := serve(t, d, `{"execute":"guest-ping","id":1}{"execute":"test-mapped"}`)
	want := `{"error":{"class":"CommandNotFound","desc":"Command guest-ping has been disabled"},"id":1}` + "\n" +
		`{"error":{"class":"CommandNotFound","desc":"Command test-mapped has been disabled"}}` + "\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	info := infoOf(t, d)
	for _, c := range info.SupportedCommands {
		// exec_command disables guest-exec and guest-exec-status too.
		wantEnabled := c.Name != "guest-ping" && c.Name != "test-mapped" && c.Name != "guest-exec" && c.Name != "guest-exec-status"
		if c.Enabled != wantEnabled {
			t.Errorf("guest-info: %s enabled = %v, want %v", c.Name, c.Enabled, wantEnabled)
		}
	}
}

func infoOf(t *testing.T, d *Dialect) qapi.GuestAgentInfo {
	t.Helper()
	out := serve(t, d, `{"execute":"guest-info"}`)
	var r struct {
		Return qapi.GuestAgentInfo `json:"return"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("guest-info reply %q: %v", out, err)
	}
	return r.Return
}

// guest-info lists exactly the registered commands, in registry order,
// with their success-response flag.
func TestInfoListsRegistry(t *testing.T) {
	svc := methods.New(config.Default(), methods.Options{})
	d := New(svc, config.Default(), Options{})
	info := infoOf(t, d)
	if info.Version == "" {
		t.Error("no version")
	}
	if len(info.SupportedCommands) != len(d.cmds) {
		t.Fatalf("%d commands listed, %d registered", len(info.SupportedCommands), len(d.cmds))
	}
	for i, c := range info.SupportedCommands {
		r := d.cmds[i]
		if c.Name != r.Name || !c.Enabled || c.SuccessResponse == r.NoSuccessResponse {
			t.Errorf("entry %d = %+v, registered %s (no success response %v)", i, c, r.Name, r.NoSuccessResponse)
		}
		if !qapi.Known(c.Name) {
			t.Errorf("%s is not in the schema", c.Name)
		}
	}
	for _, name := range []string{"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info"} {
		if d.byName[name] == nil {
			t.Errorf("%s not registered", name)
		}
	}
}

// The schema's success-response false commands are registered as such.
func TestNoSuccessResponseMatchesSchema(t *testing.T) {
	d := New(methods.New(config.Default(), methods.Options{}), config.Default(), Options{})
	for _, c := range d.cmds {
		want := false
		for _, n := range qapi.NoSuccessResponse {
			want = want || n == c.Name
		}
		if c.NoSuccessResponse != want {
			t.Errorf("%s: NoSuccessResponse = %v, schema says %v", c.Name, c.NoSuccessResponse, want)
		}
	}
}

// Cancelling the context ends a session that waits for input.
func TestServeConnCancel(t *testing.T) {
	d := newTestDialect(t, nil, Options{})
	a, b := netPipe(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeConn(ctx, a) }()
	if _, err := b.Write([]byte(`{"execute":"guest-ping"}`)); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, err := b.Read(line)
	if err != nil || string(line[:n]) != `{"return":{}}`+"\n" {
		t.Fatalf("read %q, %v", line[:n], err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("ServeConn = %v, want context.Canceled", err)
	}
}
