package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/client/clienttest"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

var binaryFile = []byte{0x7f, 'E', 'L', 'F', 0, 0xff, '\n'}

// fakeAgent answers like an agent in a small guest and records requests.
type fakeAgent struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method string
	params json.RawMessage
}

func (f *fakeAgent) last() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return recorded{}
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeAgent) handle(_ context.Context, method string, params json.RawMessage) (any, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{method, params})
	f.mu.Unlock()
	switch method {
	case protocol.MethodPing:
		return protocol.PingResult{Pong: true, Timestamp: 1700000000}, nil
	case protocol.MethodGetAgentInfo:
		return protocol.AgentInfo{Version: "1.2.3", ProtocolVersion: "1.0.0", Platform: "linux", Capabilities: []string{"ping", "sync"}}, nil
	case protocol.MethodGetSystemInfo:
		return protocol.SystemInfo{OSType: "linux", OSName: "Debian GNU/Linux", OSVersion: "12 (bookworm)", KernelVersion: "6.1.0-56-cloud-amd64",
			Hostname: "guest1", Architecture: "x86_64", CPUCount: 2, TotalMemoryKB: 2048000, UptimeSeconds: 3725}, nil
	case protocol.MethodGetNetworkInfo:
		return protocol.NetworkInfo{Interfaces: []protocol.Interface{
			{Name: "lo", MACAddress: "00:00:00:00:00:00", IPv4Addresses: []string{"127.0.0.1/8"}, IPv6Addresses: []string{"::1/128"}, State: "unknown", MTU: 65536},
			{Name: "eth0", MACAddress: "52:54:00:12:34:56", IPv4Addresses: []string{}, IPv6Addresses: []string{}, State: "down", MTU: 1500},
		}}, nil
	case protocol.MethodGetDiskUsage:
		return protocol.DiskUsage{Filesystems: []protocol.Filesystem{
			{MountPoint: "/media/cdrom", Device: "/dev/sr0", FSType: "iso9660", TotalBytes: 20 << 20, UsedBytes: 20 << 20, UsedPercent: 100},
			{MountPoint: "/", Device: "/dev/vda1", FSType: "ext4", TotalBytes: 10 << 30, UsedBytes: 1288490189, AvailableBytes: 9 << 30, UsedPercent: 13},
		}}, nil
	case protocol.MethodExecCommand:
		var p protocol.ExecParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, "%v", err)
		}
		switch p.Command {
		case "false":
			return protocol.ExecResult{ExitCode: 7, Stdout: "to stdout\n", Stderr: "to stderr\n"}, nil
		case "sleep":
			return nil, protocol.Errorf(protocol.CodeTimeout, "command timed out after 1s").WithData(protocol.ExecResult{ExitCode: -1, Stdout: "partial\n"})
		case "nosuch":
			return nil, protocol.Errorf(protocol.CodeNotFound, `command "nosuch" not found`)
		}
		return protocol.ExecResult{Stdout: strings.Join(append([]string{p.Command}, p.Args...), " ") + "\n"}, nil
	case protocol.MethodFileRead:
		var p protocol.FileReadParams
		json.Unmarshal(params, &p) //nolint:errcheck // checked through the recorded params
		if p.Path == "/etc/shadow" {
			return nil, protocol.Errorf(protocol.CodePermissionDenied, `path "/etc/shadow" is outside allowed_read_paths`)
		}
		return protocol.FileReadResult{Content: base64.StdEncoding.EncodeToString(binaryFile), SizeBytes: int64(len(binaryFile)), Encoding: p.Encoding}, nil
	case protocol.MethodFileWrite:
		var p protocol.FileWriteParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		if p.Path == "/tmp/missing/f" && !p.CreateDirs {
			return nil, protocol.Errorf(protocol.CodeNotFound, "write /tmp/missing/f: the directory does not exist (set create_dirs to create it)")
		}
		b, err := base64.StdEncoding.DecodeString(p.Content)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, "bad base64")
		}
		return protocol.FileWriteResult{BytesWritten: int64(len(b)), Path: p.Path}, nil
	case protocol.MethodShutdown, protocol.MethodReboot:
		return protocol.PowerResult{Initiated: true, Message: "asked systemd to " + method}, nil
	}
	return nil, protocol.Errorf(protocol.CodeMethodNotFound, "method %q not found", method)
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, env{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
		locator: locator{
			dumpXML: func(context.Context, string) ([]byte, error) { return nil, errString("virsh: not installed") },
			root:    t.TempDir(),
		},
	})
	return result{code, out.String(), errOut.String()}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestCommands(t *testing.T) {
	f := &fakeAgent{}
	srv := clienttest.NewServer(t)
	srv.Serve(f.handle)
	sock := srv.Path

	tests := []struct {
		name       string
		args       []string
		stdin      string
		code       int
		stdout     []string // substrings, in order
		stdoutIs   *string  // exact
		stderr     []string
		wantMethod string
		wantParams string
	}{
		{name: "ping", args: []string{"--socket", sock, "ping"}, stdout: []string{"pong: agent clock 2023-11-14T22:13:20Z", "round trip"}},
		{name: "ping json after the command", args: []string{"ping", "--socket", sock, "--json"}, stdout: []string{`"pong": true`, `"timestamp": 1700000000`}},
		{name: "info", args: []string{"-s", sock, "info"}, stdout: []string{"Version", "1.2.3", "Methods", "ping, sync"}},
		{name: "system table", args: []string{"-s", sock, "system"},
			stdout: []string{"OS            Debian GNU/Linux 12 (bookworm) (linux)", "Kernel        6.1.0-56-cloud-amd64", "Hostname      guest1",
				"Architecture  x86_64", "CPUs          2", "Memory        2.0GiB (2048000 kB)", "Uptime        1h2m5s"}},
		{name: "system json", args: []string{"-s", sock, "--json", "system"}, stdout: []string{`"total_memory_kb": 2048000`}},
		{name: "network table", args: []string{"-s", sock, "network"},
			stdout: []string{"NAME  STATE    MTU    MAC                ADDRESSES",
				"lo    unknown  65536  00:00:00:00:00:00  127.0.0.1/8 ::1/128",
				"eth0  down     1500   52:54:00:12:34:56  -"}},
		{name: "disks table", args: []string{"-s", sock, "disks"},
			stdout: []string{"MOUNT         DEVICE     TYPE     SIZE     USED     AVAIL   USE%",
				"/media/cdrom  /dev/sr0   iso9660  20.0MiB  20.0MiB  0B      100%",
				"/             /dev/vda1  ext4     10.0GiB  1.2GiB   9.0GiB  13%"}},
		{name: "exec propagates the remote exit code", args: []string{"-s", sock, "exec", "--", "false"}, code: 7,
			stdout: []string{"to stdout\n"}, stderr: []string{"to stderr\n"}},
		{name: "exec without -- keeps the command's flags", args: []string{"-s", sock, "exec", "ls", "-l", "/"},
			stdoutIs: ptr("ls -l /\n"), wantMethod: "exec_command", wantParams: `{"command":"ls","args":["-l","/"]}`},
		{name: "exec --timeout is the remote timeout", args: []string{"-s", sock, "exec", "--timeout", "3", "--cwd", "/tmp", "--", "uname", "-r"},
			stdoutIs: ptr("uname -r\n"), wantMethod: "exec_command", wantParams: `{"command":"uname","args":["-r"],"timeout_seconds":3,"working_directory":"/tmp"}`},
		{name: "exec json keeps the exit code", args: []string{"-s", sock, "--json", "exec", "false"}, code: 7, stdout: []string{`"exit_code": 7`}},
		{name: "exec timeout shows partial output", args: []string{"-s", sock, "exec", "sleep", "9"}, code: 1,
			stdout: []string{"partial\n"}, stderr: []string{"agent error -32003 (timeout): command timed out after 1s"}},
		{name: "exec unknown command", args: []string{"-s", sock, "exec", "nosuch"}, code: 1,
			stderr: []string{`agent error -32002 (not found): command "nosuch" not found`}},
		{name: "read writes raw bytes", args: []string{"-s", sock, "read", "/tmp/bin"}, stdoutIs: ptr(string(binaryFile)),
			wantMethod: "file_read", wantParams: `{"path":"/tmp/bin","encoding":"base64"}`},
		{name: "read --base64 prints base64", args: []string{"-s", sock, "read", "/tmp/bin", "--base64"},
			stdoutIs: ptr(base64.StdEncoding.EncodeToString(binaryFile) + "\n")},
		{name: "read refused", args: []string{"-s", sock, "read", "/etc/shadow"}, code: 1,
			stderr: []string{`agent error -32001 (permission denied): path "/etc/shadow" is outside allowed_read_paths`}},
		{name: "write sends stdin as base64", args: []string{"-s", sock, "write", "/tmp/x", "--mode", "0600"}, stdin: "hi\x00\xff",
			stdout: []string{"wrote 4 bytes to /tmp/x"}, wantMethod: "file_write",
			wantParams: `{"path":"/tmp/x","content":"aGkA/w==","encoding":"base64","permissions":"0600"}`},
		{name: "write --create-dirs", args: []string{"-s", sock, "write", "--create-dirs", "/tmp/a/b"}, stdin: "",
			stdout: []string{"wrote 0 bytes to /tmp/a/b"}, wantMethod: "file_write",
			wantParams: `{"path":"/tmp/a/b","content":"","encoding":"base64","create_dirs":true}`},
		{name: "write into a missing directory names the flag", args: []string{"-s", sock, "write", "/tmp/missing/f"}, stdin: "x", code: 1,
			stderr: []string{"agent error -32002 (not found): write /tmp/missing/f: the directory does not exist (add --create-dirs to create it)"}},
		{name: "shutdown --force", args: []string{"-s", sock, "shutdown", "--force"}, stdout: []string{"shutdown initiated: asked systemd to shutdown"},
			wantMethod: "shutdown", wantParams: `{"force":true}`},
		{name: "reboot --grace", args: []string{"-s", sock, "reboot", "--grace", "5"}, stdout: []string{"reboot initiated"},
			wantMethod: "reboot", wantParams: `{"timeout_seconds":5}`},
		{name: "libvirt-xml", args: []string{"libvirt-xml"},
			stdoutIs: ptr("<channel type='unix'>\n  <source mode='bind'/>\n  <target type='virtio' name='org.kvmmanager.agent.0'/>\n</channel>\n")},
		{name: "libvirt-xml with a domain hints on stderr", args: []string{"libvirt-xml", "vm1"},
			stdout: []string{"<channel type='unix'>"}, stderr: []string{"virsh attach-device vm1 agent-channel.xml --config", "virsh edit vm1"}},

		{name: "no command", args: []string{"-s", sock}, code: 2, stderr: []string{"missing command"}},
		{name: "unknown command", args: []string{"-s", sock, "frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{name: "unknown flag", args: []string{"-s", sock, "ping", "--nope"}, code: 2, stderr: []string{"unknown flag: --nope", "ping --help"}},
		{name: "read needs a path", args: []string{"-s", sock, "read"}, code: 2, stderr: []string{"read takes one PATH"}},
		{name: "exec needs a command", args: []string{"-s", sock, "exec"}, code: 2, stderr: []string{"exec takes a command to run"}},
		{name: "bad mode", args: []string{"-s", sock, "write", "/tmp/x", "--mode", "0999"}, code: 2, stderr: []string{`--mode "0999"`}},
		{name: "no socket", args: []string{"ping"}, code: 2, stderr: []string{"--socket PATH", "--domain NAME"}},
		{name: "socket and domain", args: []string{"-s", sock, "-d", "vm1", "ping"}, code: 2, stderr: []string{"not both"}},
		{name: "bad timeout", args: []string{"-s", sock, "--timeout", "soon", "ping"}, code: 2},

		{name: "help", args: []string{"--help"}, stdout: []string{"Usage: kvmmanager-agentctl", "exec", "libvirt-xml", "Exit status"}},
		{name: "command help", args: []string{"exec", "--help"},
			stdout: []string{"exec [--timeout SECONDS] [--cwd DIR] [--] COMMAND [ARGS...]", "--cwd DIR", "--timeout SECONDS", "Global flags", "--socket PATH"}},

		{name: "missing socket is unreachable", args: []string{"-s", "/nonexistent/agent.sock", "ping"}, code: 3,
			stderr: []string{"agent unreachable", "/nonexistent/agent.sock"}},
		{name: "unknown domain is unreachable", args: []string{"-d", "vm9", "ping"}, code: 3,
			stderr: []string{"find the agent socket of domain vm9", "virsh: not installed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.stdin, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if tt.stdoutIs != nil && r.stdout != *tt.stdoutIs {
				t.Errorf("stdout = %q, want %q", r.stdout, *tt.stdoutIs)
			}
			containsInOrder(t, "stdout", r.stdout, tt.stdout)
			containsInOrder(t, "stderr", r.stderr, tt.stderr)
			if tt.wantMethod != "" {
				got := f.last()
				if got.method != tt.wantMethod || string(got.params) != tt.wantParams {
					t.Errorf("agent got %s %s, want %s %s", got.method, got.params, tt.wantMethod, tt.wantParams)
				}
			}
		})
	}
}

func containsInOrder(t *testing.T, name, got string, want []string) {
	t.Helper()
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (in order)\n%s:\n%s", name, w, name, got)
			return
		}
		rest = rest[i+len(w):]
	}
}

func ptr[T any](v T) *T { return &v }

func TestSilentAgentIsUnreachable(t *testing.T) {
	// A QEMU chardev socket accepts the connection even when no agent runs
	// in the guest: nothing ever answers.
	srv := clienttest.NewServer(t)
	go srv.Accept()
	r := runCLI(t, "", "--socket", srv.Path, "--timeout", "100ms", "ping")
	if r.code != 3 || !strings.Contains(r.stderr, "no answer within 100ms") {
		t.Fatalf("exit %d, stderr %q; want 3 and a no-answer message", r.code, r.stderr)
	}
}

func TestDomainFoundThroughVirsh(t *testing.T) {
	srv := clienttest.NewServer(t)
	f := &fakeAgent{}
	srv.Serve(f.handle)
	xmlDoc := `<domain type='kvm' id='4'><name>vm1</name><devices>
  <channel type='unix'><source mode='bind' path='` + srv.Path + `'/>
  <target type='virtio' name='org.kvmmanager.agent.0' state='connected'/></channel>
</devices></domain>`
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--domain", "vm1", "ping"}, env{
		stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		locator: locator{dumpXML: func(_ context.Context, d string) ([]byte, error) {
			if d != "vm1" {
				t.Errorf("virsh asked for %q", d)
			}
			return []byte(xmlDoc), nil
		}, root: t.TempDir()},
	})
	if code != 0 || !strings.HasPrefix(out.String(), "pong") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
