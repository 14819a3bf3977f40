package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/transport"
)

// TestMain lets the service control manager start this test binary as the
// agent's service (TestServiceInstallStartStop registers it so).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serviceFlag {
		os.Exit(start(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func pipeName(t *testing.T, what string) string {
	var b [6]byte
	rand.Read(b[:])
	return `\\.\pipe\kvmmanager-` + what + "-" + hex.EncodeToString(b[:])
}

// writeConfig writes a config allowing reads and writes in dir.
func writeConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := filepath.Join(dir, "config.json")
	js := fmt.Sprintf(`{"allowed_read_paths": [%q], "allowed_write_paths": [%q], "command_timeout_seconds": 60, "log_level": "debug"}`,
		filepath.Join(dir, "files"), filepath.Join(dir, "files"))
	if err := os.WriteFile(cfg, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startAgent runs the agent (its main code path) with args until the test
// ends, and returns its log file.
func startAgent(t *testing.T, args ...string) (logFile string) {
	t.Helper()
	logFile = filepath.Join(t.TempDir(), "agent.log")
	ctx, cancel := context.WithCancel(context.Background())
	baseContext = ctx
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() { done <- run(append(args, "--log-file", logFile), &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("agent exited %d: %s", code, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop within 20 s")
		}
		baseContext = context.Background()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("agent log:\n%s", b)
		}
	})
	return logFile
}

func wantCode(t *testing.T, what string, err error, code int) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Errorf("%s: err = %v, want code %d", what, err, code)
	}
}

// processesNamed counts the running processes with the image name.
func processesNamed(t *testing.T, image string) int {
	t.Helper()
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		t.Fatalf("CreateToolhelp32Snapshot: %v", err)
	}
	defer windows.CloseHandle(snap)
	var e windows.ProcessEntry32
	e.Size = uint32(unsafe.Sizeof(e))
	n := 0
	for err := windows.Process32First(snap, &e); err == nil; err = windows.Process32Next(snap, &e) {
		if strings.EqualFold(windows.UTF16ToString(e.ExeFile[:]), image) {
			n++
		}
	}
	return n
}

// TestEndToEndOverNamedPipe: a named pipe stands in for the vioserial port.
// The agent opens it with --device through the same CreateFile path as the
// real port, and the host client drives every method through it.
func TestEndToEndOverNamedPipe(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	files := filepath.Join(dir, "files")
	pipe := pipeName(t, "port")
	ln, err := transport.ListenPipe(pipe)
	if err != nil {
		t.Fatalf("host side of the pipe: %v", err)
	}
	defer ln.Close()
	logFile := startAgent(t, "--device", pipe, "--config", cfg)

	accept := func(ctx context.Context) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() { c, err := ln.Accept(); ch <- res{c, err} }()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, pipe, client.WithDialer(accept), client.WithCallTimeout(30*time.Second),
		client.WithReadyPolling(time.Second, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	if err := c.WaitReady(rctx); err != nil {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("agent not ready: %v\nlog:\n%s", err, b)
	}
	if b, _ := os.ReadFile(logFile); !bytes.Contains(b, []byte("Connected to virtio-serial device")) {
		t.Errorf("agent log lacks %q:\n%s", "Connected to virtio-serial device", b)
	}

	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	info, err := c.AgentInfo(ctx)
	if err != nil || info.Platform == "" || len(info.Capabilities) < 11 {
		t.Errorf("get_agent_info = %+v, %v", info, err)
	}
	host, _ := os.Hostname()
	sys, err := c.SystemInfo(ctx)
	if err != nil || sys.OSType != "windows" || sys.Hostname != host || sys.CPUCount < 1 || sys.TotalMemoryKB == 0 || sys.KernelVersion == "" {
		t.Errorf("get_system_info = %+v, %v", sys, err)
	}
	t.Logf("get_system_info: %+v", sys)
	disks, err := c.DiskUsage(ctx)
	foundC := false
	for _, fs := range disks.Filesystems {
		foundC = foundC || strings.EqualFold(fs.MountPoint, `C:\`) && fs.TotalBytes > 0 && fs.FSType != ""
	}
	if err != nil || !foundC {
		t.Errorf("get_disk_usage = %+v, %v; want C:\\", disks, err)
	}
	t.Logf("get_disk_usage: %+v", disks)
	nets, err := c.NetworkInfo(ctx)
	if err != nil {
		// Wine's GetAdaptersAddresses fails ("Invalid data"): the agent
		// says so as an internal error and goes on.
		wantCode(t, "get_network_info", err, protocol.CodeInternalError)
		t.Logf("get_network_info under Wine: %v", err)
	} else {
		t.Logf("get_network_info: %+v", nets)
	}

	// exec_command: cmd /c echo, exit codes, argument quoting.
	res, err := c.Exec(ctx, protocol.ExecParams{Command: "cmd", Args: []string{"/c", "echo", "hello-from-cmd"}})
	if err != nil || strings.TrimSpace(res.Stdout) != "hello-from-cmd" || res.ExitCode != 0 {
		t.Errorf("exec cmd /c echo = %+v, %v", res, err)
	}
	res, err = c.Exec(ctx, protocol.ExecParams{Command: "cmd", Args: []string{"/c", "exit 7"}})
	if err != nil || res.ExitCode != 7 {
		t.Errorf("exec cmd /c exit 7 = %+v, %v", res, err)
	}
	_, err = c.Exec(ctx, protocol.ExecParams{Command: "no-such-program"})
	wantCode(t, "exec of a missing program", err, protocol.CodeNotFound)
	_, err = c.Exec(ctx, protocol.ExecParams{Command: `..\cmd.exe`})
	wantCode(t, "exec of a relative path", err, protocol.CodeInvalidParams)

	// A timeout kills the whole tree: cmd starts a second cmd in the
	// background, both run ping for a minute.
	before := processesNamed(t, "ping.exe")
	timeout := 3
	t0 := time.Now()
	_, err = c.Exec(ctx, protocol.ExecParams{Command: "cmd", TimeoutSeconds: &timeout,
		Args: []string{"/c", "start /b cmd /c ping -n 60 127.0.0.1 >nul & ping -n 60 127.0.0.1 >nul"}})
	wantCode(t, "exec past its timeout", err, protocol.CodeTimeout)
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("the timed-out exec took %v", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processesNamed(t, "ping.exe") > before && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := processesNamed(t, "ping.exe"); n > before {
		t.Errorf("%d ping.exe processes of the timed-out command still run", n-before)
	}

	// Files: a round trip (text and binary), then Windows path tricks.
	target := filepath.Join(files, "sub", "round.bin")
	data := []byte("binary\x00\xff\r\nround trip")
	if _, err := c.WriteFile(ctx, protocol.FileWriteParams{Path: target, Content: b64(data), Encoding: protocol.EncodingBase64, CreateDirs: true}); err != nil {
		t.Errorf("file_write: %v", err)
	}
	got, err := c.ReadFileBytes(ctx, target)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("file_read after file_write = %q, %v; want %q", got, err, data)
	}
	if _, err := c.WriteFile(ctx, protocol.FileWriteParams{Path: target, Content: "replaced"}); err != nil {
		t.Errorf("file_write over an existing file: %v", err)
	}
	if r, err := c.ReadFile(ctx, strings.ToUpper(target), protocol.EncodingUTF8); err != nil || r.Content != "replaced" {
		t.Errorf("file_read in upper case = %+v, %v", r, err)
	}
	winIni := `C:\windows\win.ini`
	for _, tt := range []struct {
		path string
		code int
	}{
		{`\\?\` + target, protocol.CodePermissionDenied},
		{`\\.\` + target, protocol.CodePermissionDenied},
		{`\\.\PhysicalDrive0`, protocol.CodePermissionDenied},
		{`\\localhost\C$\windows\win.ini`, protocol.CodePermissionDenied},
		{files + `\..\..\..\..\..\windows\win.ini`, protocol.CodePermissionDenied},
		{target + `:hidden`, protocol.CodePermissionDenied},
		{target + `::$DATA`, protocol.CodePermissionDenied},
		{files + `\CON`, protocol.CodePermissionDenied},
		{files + `\nul.txt`, protocol.CodePermissionDenied},
		{target + `.`, protocol.CodePermissionDenied},
		{files + `\SUB~1\round.bin`, protocol.CodePermissionDenied},
		{winIni, protocol.CodePermissionDenied},
		{files + `Foo\x`, protocol.CodePermissionDenied},
		{`files\round.bin`, protocol.CodeInvalidParams},
		{filepath.Join(files, "missing"), protocol.CodeNotFound},
	} {
		_, err := c.ReadFile(ctx, tt.path, protocol.EncodingUTF8)
		wantCode(t, "file_read "+tt.path, err, tt.code)
		if tt.code == protocol.CodeNotFound {
			continue
		}
		_, err = c.WriteFile(ctx, protocol.FileWriteParams{Path: tt.path, Content: "x"})
		if tt.path == files+`\..\..\..\..\..\windows\win.ini` {
			wantCode(t, "file_write "+tt.path, err, protocol.CodePermissionDenied)
			continue
		}
		wantCode(t, "file_write "+tt.path, err, tt.code)
	}
	if b, err := os.ReadFile(winIni); err == nil && bytes.Equal(b, []byte("x")) {
		t.Errorf("%s was overwritten", winIni)
	}
}

func b64(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out strings.Builder
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < 4; j++ {
			if j <= k {
				out.WriteByte(enc[(n>>(18-6*j))&63])
			} else {
				out.WriteByte('=')
			}
		}
	}
	return out.String()
}

// TestDeviceNotFoundIsLogged: without the port the agent says so once and
// waits (it does not exit or spin).
func TestDeviceNotFoundIsLogged(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	logFile := startAgent(t, "--config", cfg) // the default \\.\Global\org.kvmmanager.agent.0: no vioserial here
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if bytes.Contains(b, []byte("Virtio-serial device not found")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", "Virtio-serial device not found", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestListenNamedPipe: --listen npipe: serves clients on a named pipe.
func TestListenNamedPipe(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	pipe := pipeName(t, "listen")
	startAgent(t, "--listen", "npipe:"+pipe, "--config", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dial := func(ctx context.Context) (net.Conn, error) { return transport.DialPipe(ctx, pipe) }
	var c *client.Client
	var err error
	for c == nil && ctx.Err() == nil {
		if c, err = client.Dial(ctx, pipe, client.WithDialer(dial)); err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if c == nil {
		t.Fatalf("dial %s: %v", pipe, err)
	}
	defer c.Close()
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("ping over --listen npipe: %v", err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--listen", "unix:/tmp/x", "--config", cfg}, &out, &errOut); code != exitUsage ||
		!strings.Contains(errOut.String(), `want npipe:PATH`) {
		t.Errorf("--listen unix: on Windows = %d %q, want exit 2 naming npipe:", code, errOut.String())
	}
}

// TestServiceInstallStartStop registers this test binary as the
// kvmmanager-agent service with Wine's (or Windows') service control
// manager, starts it, talks to it over --listen npipe:, stops and removes
// it. TestMain runs the agent when the service manager starts the binary.
func TestServiceInstallStartStop(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	pipe := pipeName(t, "service")
	var out, errOut bytes.Buffer
	flags := []string{"--config", cfg, "--listen", "npipe:" + pipe, "--log-file", filepath.Join(dir, "service.log")}
	if code := serviceCommand(append([]string{"install"}, flags...), &out, &errOut); code != exitOK {
		t.Fatalf("service install = %d: %s%s", code, out.String(), errOut.String())
	}
	defer func() {
		out.Reset()
		if code := serviceCommand([]string{"uninstall"}, &out, &errOut); code != exitOK {
			t.Errorf("service uninstall = %d: %s%s", code, out.String(), errOut.String())
		}
	}()
	// Installing again updates the registration and keeps the config.
	if code := serviceCommand(append([]string{"install"}, flags...), &out, &errOut); code != exitOK || !strings.Contains(out.String(), "updated") {
		t.Errorf("second service install = %d: %s%s", code, out.String(), errOut.String())
	}
	t.Logf("install:\n%s", out.String())
	m, err := mgr.Connect()
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.OpenService(serviceName)
	if err != nil {
		t.Fatal(err)
	}
	if sc, err := s.Config(); err != nil {
		t.Logf("reading the service config back: %v (Wine lacks some QueryServiceConfig2 levels)", err)
	} else if sc.StartType != mgr.StartAutomatic || !strings.Contains(sc.BinaryPathName, pipe) {
		t.Errorf("service config = %+v", sc)
	}
	if ra, err := s.RecoveryActions(); err != nil || len(ra) != 3 || ra[0].Type != mgr.ServiceRestart {
		t.Logf("recovery actions = %+v, %v (Wine may not keep them)", ra, err)
	}
	s.Close()
	m.Disconnect()
	if _, err := os.Stat(filepath.Join(os.Getenv("ProgramData"), "kvmmanager-agent", "config.json")); err != nil {
		t.Errorf("default config not written: %v", err)
	}

	out.Reset()
	started := make(chan int, 1)
	var startOut, startErr bytes.Buffer
	go func() { started <- serviceCommand([]string{"start"}, &startOut, &startErr) }()
	select {
	case code := <-started:
		if code != exitOK {
			b, _ := os.ReadFile(filepath.Join(dir, "service.log"))
			t.Fatalf("service start = %d: %s%s\nservice log:\n%s", code, startOut.String(), startErr.String(), b)
		}
	case <-time.After(90 * time.Second):
		b, _ := os.ReadFile(filepath.Join(dir, "service.log"))
		t.Fatalf("service start did not return within 90 s\nservice log:\n%s", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := transport.DialPipe(ctx, pipe)
	if err != nil {
		t.Fatalf("dial the service's pipe: %v", err)
	}
	c, err := client.Dial(ctx, pipe, client.WithDialer(func(context.Context) (net.Conn, error) { return conn, nil }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("ping the service: %v", err)
	}
	c.Close()
	out.Reset()
	if code := serviceCommand([]string{"stop"}, &out, &errOut); code != exitOK {
		t.Errorf("service stop = %d: %s%s", code, out.String(), errOut.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "service.log"))
	if !bytes.Contains(b, []byte("kvmmanager-agent stopped")) {
		t.Errorf("service log lacks the clean stop:\n%s", b)
	}
}
