package bench

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestJSONRPCCodecRequest(t *testing.T) {
	tests := []struct {
		method string
		params any
		want   string
	}{
		{"ping", nil, `{"jsonrpc":"2.0","id":7,"method":"ping"}` + "\n"},
		{"file_read", protocol.FileReadParams{Path: "/tmp/a", Encoding: "base64"},
			`{"jsonrpc":"2.0","id":7,"method":"file_read","params":{"path":"/tmp/a","encoding":"base64"}}` + "\n"},
	}
	for _, tt := range tests {
		got, err := jsonrpcCodec{}.appendRequest(nil, 7, tt.method, tt.params)
		if err != nil || string(got) != tt.want {
			t.Errorf("appendRequest(%s) = %q, %v; want %q", tt.method, got, err, tt.want)
		}
	}
}

func TestJSONRPCCodecResponse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		wantID  uint64
		wantErr string
		code    int
	}{
		{"result", `{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1},"id":3}`, 3, "", 0},
		{"error", `{"jsonrpc":"2.0","error":{"code":-32601,"message":"no such method"},"id":4}`, 4, "no such method", -32601},
		{"no result", `{"jsonrpc":"2.0","id":5}`, 5, "neither result nor error", 0},
		{"wrong version", `{"jsonrpc":"1.0","result":1,"id":5}`, 0, "jsonrpc", 0},
		{"null id", `{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse"},"id":null}`, 0, "not a request id", 0},
		{"garbage", `nope`, 0, "decode reply", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r protocol.PingResult
			id, err := jsonrpcCodec{}.parseResponse([]byte(tt.line), &r)
			if id != tt.wantID {
				t.Errorf("id = %d, want %d", id, tt.wantID)
			}
			if tt.wantErr == "" {
				if err != nil || !r.Pong {
					t.Fatalf("err = %v, result %+v", err, r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			var pe *protocol.Error
			if tt.code != 0 && (!errors.As(err, &pe) || pe.Code != tt.code) {
				t.Fatalf("err = %#v, want *protocol.Error code %d", err, tt.code)
			}
		})
	}
}

func TestQGACodec(t *testing.T) {
	got, err := qgaCodec{}.appendRequest(nil, 9, "guest-file-read", map[string]int64{"count": 4, "handle": 1000})
	want := `{"execute":"guest-file-read","arguments":{"count":4,"handle":1000},"id":9}` + "\n"
	if err != nil || string(got) != want {
		t.Fatalf("appendRequest = %q, %v; want %q", got, err, want)
	}
	tests := []struct {
		line    string
		wantID  uint64
		wantErr string
	}{
		{`{"return": {}, "id": 9}`, 9, ""},
		{`{"return": {}}`, 0, ""},
		{`{"error": {"class": "GenericError", "desc": "Invalid parameter 'pid'"}, "id": 2}`, 2, "Invalid parameter 'pid'"},
		{`{"id": 2}`, 2, "neither return nor error"},
	}
	for _, tt := range tests {
		id, err := qgaCodec{}.parseResponse([]byte(tt.line), nil)
		if id != tt.wantID || (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("parseResponse(%s) = %d, %v; want %d, error %q", tt.line, id, err, tt.wantID, tt.wantErr)
		}
	}
	if err := (qgaCodec{}).parseSync([]byte(`{"return": 1234}`), 1234); err != nil {
		t.Errorf("parseSync of the matching token: %v", err)
	}
	if err := (qgaCodec{}).parseSync([]byte(`{"return": 1}`), 1234); err == nil {
		t.Errorf("parseSync accepted a stale token")
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 2 may contain spaces and parentheses.
	stat := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 17 5 0 0 20 0 3 0 100 1000000 500 18446744073709551615"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 22 {
		t.Fatalf("parseStatCPU = %d, %v; want 17+5 = 22", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("parseStatCPU accepted a truncated line")
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tqemu-ga\nVmPeak:\t  300000 kB\nVmHWM:\t    9000 kB\nVmRSS:\t    7100 kB\n"
	if got := parseStatusKB([]byte(status), "VmRSS"); got != 7100 {
		t.Errorf("VmRSS = %d, want 7100", got)
	}
	if got := parseStatusKB([]byte(status), "VmHWM"); got != 9000 {
		t.Errorf("VmHWM = %d, want 9000", got)
	}
	if got := parseStatusKB([]byte(status), "VmSwap"); got != -1 {
		t.Errorf("missing VmSwap = %d, want -1", got)
	}
}

func TestMedianPercentile(t *testing.T) {
	if got := median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestFiguresGoals(t *testing.T) {
	values := values{
		{keyPingSeqRPS: {30000, 31000, 29000, 30500, 30200}, keyExecP50: {2, 2, 2, 2, 2}, keyIdleRSS: {9000}},
		{keyPingSeqRPS: {10000, 10000, 10000, 10000, 10000}, keyExecP50: {3, 3, 3, 3, 3}, keyIdleRSS: {9000}},
	}
	got := map[string]Figure{}
	for _, f := range figures(values, "10 MiB") {
		got[f.Key] = f
	}
	if len(got) != 3 {
		t.Fatalf("figures = %v, want only the three measured", got)
	}
	for _, tt := range []struct {
		key   string
		ratio float64
		met   bool
	}{{"ping_seq.rps", 3.02, true}, {"exec.p50_us", 0.667, false}, {"mem.idle_rss_kib", 1, true}} {
		f := got[tt.key]
		if math.Abs(float64(f.Ratio)-tt.ratio) > 0.001 || f.Met == nil || *f.Met != tt.met {
			t.Errorf("%s: ratio %v met %v; want %v %v", tt.key, f.Ratio, f.Met, tt.ratio, tt.met)
		}
	}
	if b, err := json.Marshal(Figure{Ratio: ratio(1, 0)}); err != nil || !strings.Contains(string(b), `"ratio":null`) {
		t.Errorf("an infinite ratio encodes as %s, %v; want null", b, err)
	}
	rep := Report{Figures: figures(values, "10 MiB")}
	table := rep.Table()
	if !strings.Contains(table, "| exec /bin/true to its result p50 | 2.00 µs | 3.00 µs | 0.67× | ≤ 0.5× | **no** |") {
		t.Errorf("table lacks the exec row as expected:\n%s", table)
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/kvmmanager/guest-agent/agent/server
cpu: Intel(R) Xeon(R) Processor
BenchmarkDispatchPing-2   	  312345	      3811 ns/op	     512 B/op	       9 allocs/op
BenchmarkLineReader/1KiB-2	 1000000	      1040 ns/op	 984.62 MB/s	       0 B/op	       0 allocs/op
PASS
ok  	github.com/kvmmanager/guest-agent/agent/server	3.1s
`
	got := parseBench(out)
	if len(got) != 2 {
		t.Fatalf("parseBench = %+v, want 2 benchmarks", got)
	}
	want := MicroBenchmark{Package: "github.com/kvmmanager/guest-agent/agent/server", Name: "BenchmarkDispatchPing-2",
		Iterations: 312345, NsPerOp: 3811, BytesPerOp: 512, AllocsPerOp: 9}
	if got[0] != want {
		t.Errorf("first = %+v, want %+v", got[0], want)
	}
	if got[1].Extra != "984.62 MB/s" || got[1].AllocsPerOp != 0 || got[1].NsPerOp != 1040 {
		t.Errorf("second = %+v", got[1])
	}
}

func TestInspectStaticBinary(t *testing.T) {
	// The test binary itself is static when built with CGO_ENABLED=0;
	// otherwise check only that the libc it needs is resolved.
	bi, err := inspectBinary("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if bi.SizeBytes <= 0 || bi.Footprint < bi.SizeBytes {
		t.Fatalf("sizes: %+v", bi)
	}
	if len(bi.Needed) > 0 && len(bi.Loaded) < len(bi.Needed) {
		t.Fatalf("needed %v but loaded only %v", bi.Needed, bi.Loaded)
	}
}

func TestCutBigString(t *testing.T) {
	tests := []struct {
		name, line, key string
		want, rest      string
		wantErr         string
	}{
		{"ours", `{"jsonrpc":"2.0","result":{"content":"aGVsbG8=","size_bytes":5,"encoding":"base64"},"id":3}`, "content",
			"hello", `{"jsonrpc":"2.0","result":{"content":"","size_bytes":5,"encoding":"base64"},"id":3}`, ""},
		{"qemu-ga spacing", `{"return": {"count": 5, "buf-b64": "aGVsbG8=", "eof": true}, "id": 4}`, "buf-b64",
			"hello", `{"return": {"count": 5, "buf-b64": "", "eof": true}, "id": 4}`, ""},
		{"empty", `{"return": {"count": 0, "buf-b64": "", "eof": true}}`, "buf-b64", "", `{"return": {"count": 0, "buf-b64": "", "eof": true}}`, ""},
		{"missing", `{"return": {}}`, "buf-b64", "", "", "no \"buf-b64\" member"},
		{"escaped", `{"content":"aGVs\/bG8="}`, "content", "", "", "escapes"},
		{"not base64", `{"content":"***"}`, "content", "", "", "decode member"},
		{"not a string", `{"content":5}`, "content", "", "", "not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rest, err := cutBigString(nil, []byte(tt.line), tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want || string(rest) != tt.rest {
				t.Fatalf("= %q, %q, %v; want %q, %q", got, rest, err, tt.want, tt.rest)
			}
		})
	}
}

func TestRawParams(t *testing.T) {
	p := rawParams(func(dst []byte) []byte {
		dst = append(dst, `{"handle":1,`...)
		return append(appendB64Member(dst, "buf-b64", []byte("hello")), '}')
	})
	got, err := qgaCodec{}.appendRequest(nil, 2, "guest-file-write", p)
	want := `{"execute":"guest-file-write","arguments":{"handle":1,"buf-b64":"aGVsbG8="},"id":2}` + "\n"
	if err != nil || string(got) != want {
		t.Fatalf("= %q, %v; want %q", got, err, want)
	}
}

func TestBuildFigures(t *testing.T) {
	tests := []struct {
		name                string
		runs                buildRuns
		noopMet, rebuildMet bool
	}{
		{"both met", buildRuns{cold: []float64{100}, warm: []float64{3}, noop: []float64{0.3, 0.2, 0.4}, rebuild: []float64{1.2, 1.3, 1.25}, bare: []float64{1, 1, 1}}, true, true},
		{"both missed", buildRuns{noop: []float64{0.6, 0.7, 0.5}, rebuild: []float64{3.2, 3.3, 3.1}, bare: []float64{1, 1.1, 0.9}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			figs := map[string]BuildFigure{}
			for _, f := range buildFigures(tt.runs) {
				figs[f.Key] = f
			}
			if f := figs["iso_noop"]; f.Met == nil || *f.Met != tt.noopMet {
				t.Errorf("no-op %+v: met %v, want %v", f, f.Met, tt.noopMet)
			}
			if f := figs["iso_rebuild"]; f.Met == nil || *f.Met != tt.rebuildMet || !strings.Contains(f.Goal, "1.3×") {
				t.Errorf("rebuild %+v: met %v, want %v", f, f.Met, tt.rebuildMet)
			}
		})
	}
	if got := buildFigures(buildRuns{cold: []float64{90}}); len(got) != 1 || got[0].Key != "iso_cold" || got[0].Seconds != 90 {
		t.Errorf("an interrupted measurement keeps what it has: %+v", got)
	}
}

func TestPlacementCPUs(t *testing.T) {
	for _, p := range []Placement{"", PlaceSame, PlaceSplit} {
		c, a, err := p.cpus()
		if err != nil || c < 0 || a < 0 {
			t.Errorf("%q: client %d agents %d, %v", p, c, a, err)
		}
		if (p == PlaceSame || p == "") && c != a {
			t.Errorf("%q: client on %d, agents on %d; want one CPU", p, c, a)
		}
	}
	if c, a, err := PlaceFree.cpus(); err != nil || c != -1 || a != -1 {
		t.Errorf("free: %d %d %v", c, a, err)
	}
	if _, _, err := Placement("everywhere").cpus(); err == nil {
		t.Error("an unknown placement was accepted")
	}
}
