//go:build !windows

package qga

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

func ptr[T any](v T) *T { return &v }

// Decoding into the schema's types: values, and qemu-ga's error texts
// (checked against qemu-ga 7.2 by hand: see PROTOCOL-qga.md).
func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		dst     any
		want    any
		wantErr string
	}{
		{"exec full", `{"path":"/bin/echo","arg":["a","b"],"env":["X=1"],"input-data":"aGk=","capture-output":true}`, &qapi.GuestExecArgs{},
			&qapi.GuestExecArgs{Path: "/bin/echo", Arg: []string{"a", "b"}, Env: []string{"X=1"}, InputData: ptr("aGk="),
				CaptureOutput: &qapi.GuestExecCaptureOutput{Mode: qapi.CaptureSeparated}}, ""},
		{"capture mode", `{"path":"x","capture-output":"merged"}`, &qapi.GuestExecArgs{},
			&qapi.GuestExecArgs{Path: "x", CaptureOutput: &qapi.GuestExecCaptureOutput{Mode: qapi.CaptureMerged}}, ""},
		{"capture bad mode", `{"path":"x","capture-output":"all"}`, &qapi.GuestExecArgs{}, nil,
			"Parameter 'capture-output' does not accept value 'all'"},
		{"capture bad type", `{"path":"x","capture-output":1}`, &qapi.GuestExecArgs{}, nil,
			"Invalid parameter type for 'capture-output', expected: GuestExecCaptureOutput"},
		{"element type", `{"path":"x","arg":[1]}`, &qapi.GuestExecArgs{}, nil, "Invalid parameter type for 'arg[0]', expected: string"},
		{"array type", `{"path":"x","arg":"a"}`, &qapi.GuestExecArgs{}, nil, "Invalid parameter type for 'arg', expected: array"},
		{"optional absent", `{"path":"x"}`, &qapi.GuestExecArgs{}, &qapi.GuestExecArgs{Path: "x"}, ""},
		{"whence name", `{"handle":1,"offset":-3,"whence":"end"}`, &qapi.GuestFileSeekArgs{},
			&qapi.GuestFileSeekArgs{Handle: 1, Offset: -3, Whence: qapi.GuestFileWhence{Name: ptr(qapi.QGASeekEnd)}}, ""},
		{"whence value", `{"handle":1,"offset":0,"whence":1}`, &qapi.GuestFileSeekArgs{},
			&qapi.GuestFileSeekArgs{Handle: 1, Whence: qapi.GuestFileWhence{Value: ptr(int64(1))}}, ""},
		{"whence bad name", `{"handle":1,"offset":0,"whence":"bogus"}`, &qapi.GuestFileSeekArgs{}, nil, "Parameter 'whence' does not accept value 'bogus'"},
		{"whence bad type", `{"handle":1,"offset":0,"whence":true}`, &qapi.GuestFileSeekArgs{}, nil, "Invalid parameter type for 'whence', expected: GuestFileWhence"},
		{"nested missing", `{"vcpus":[{"logical-id":1}]}`, &qapi.GuestSetVcpusArgs{}, nil, "Parameter 'vcpus[0].online' is missing"},
		{"nested unexpected", `{"vcpus":[{"logical-id":1,"online":true,"zz":1}]}`, &qapi.GuestSetVcpusArgs{}, nil, "Parameter 'vcpus[0].zz' is unexpected"},
		{"nested ok", `{"vcpus":[{"logical-id":1,"online":true,"can-offline":false}]}`, &qapi.GuestSetVcpusArgs{},
			&qapi.GuestSetVcpusArgs{Vcpus: []qapi.GuestLogicalProcessor{{LogicalID: 1, Online: true, CanOffline: ptr(false)}}}, ""},
		{"bool type", `{"username":"u","password":"p","crypted":"no"}`, &qapi.GuestSetUserPasswordArgs{}, nil, "Invalid parameter type for 'crypted', expected: boolean"},
		{"missing before unexpected", `{"zz":1}`, &qapi.GuestSyncArgs{}, nil, "Parameter 'id' is missing"},
		{"uint64 negative", `{"mem-blks":[{"phys-index":-1,"online":true}]}`, &qapi.GuestSetMemoryBlocksArgs{}, nil, "Parameter 'mem-blks[0].phys-index' expects uint64"},
		{"escaped key", `{"\u0069d":5}`, &qapi.GuestSyncArgs{}, &qapi.GuestSyncArgs{ID: 5}, ""},
		{"escaped string", `{"path":"a\"\u00e9\n"}`, &qapi.GuestExecArgs{}, &qapi.GuestExecArgs{Path: "a\"é\n"}, ""},
		{"duplicate", `{"id":1,"id":2}`, &qapi.GuestSyncArgs{}, nil, "JSON parse error, duplicate key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeArgs([]byte(tt.args), tt.dst)
			if tt.wantErr != "" {
				if err == nil || err.Desc != tt.wantErr || err.Class != ClassGenericError {
					t.Fatalf("err = %v, want GenericError %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tt.dst, tt.want) {
				t.Errorf("got %+v\nwant %+v", tt.dst, tt.want)
			}
		})
	}
}

// The decoder never panics and, when it accepts, agrees with encoding/json.
func FuzzDecodeArgs(f *testing.F) {
	for _, s := range []string{`{"path":"x","arg":["a"],"capture-output":"merged"}`, `{"handle":1,"offset":2,"whence":"set"}`,
		`{"vcpus":[{"logical-id":1,"online":true}]}`, `{"id":1,"id":2}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) || len(b) == 0 || b[0] != '{' {
			return
		}
		for _, dst := range []func() any{
			func() any { return &qapi.GuestExecArgs{} },
			func() any { return &qapi.GuestFileSeekArgs{} },
			func() any { return &qapi.GuestSetVcpusArgs{} },
		} {
			ours := dst()
			if err := decodeArgs(b, ours); err != nil {
				continue
			}
			std := dst()
			if err := json.Unmarshal(b, std); err != nil {
				t.Fatalf("decodeArgs accepted %q, encoding/json: %v", b, err)
			}
			if !reflect.DeepEqual(ours, std) {
				t.Fatalf("%q: decodeArgs %+v, encoding/json %+v", b, ours, std)
			}
		}
	})
}
