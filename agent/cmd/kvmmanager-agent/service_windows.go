package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/transport"
)

// The Windows service.
const (
	serviceName        = "kvmmanager-agent"
	serviceDisplayName = "KVM Manager Agent"
	serviceDescription = "Answers the KVM host's requests (system, network and disk information, commands, files, shutdown) on the virtio-serial port org.kvmmanager.agent.0."
	// serviceWait bounds waiting for the service to reach a state.
	serviceWait = 30 * time.Second
)

// configDirSDDL protects %ProgramData%\kvmmanager-agent: SYSTEM and
// Administrators have full control, users may read. ProgramData's own ACL
// would let any user create files in a new subdirectory.
const configDirSDDL = "D:P(A;OICI;GA;;;SY)(A;OICI;GA;;;BA)(A;OICI;GRGX;;;BU)"

// serviceFlag is the first argument of the registered command line: the
// service control manager started the agent (explicit rather than guessed
// from the parent process, which Wine's service manager does not match).
const serviceFlag = "--windows-service"

// start runs the agent as a service when the service control manager
// started it, runs the service subcommands, or runs the agent in the
// console.
func start(args []string) int {
	if len(args) > 0 && args[0] == serviceFlag {
		return runService(args[1:])
	}
	if len(args) > 0 && args[0] == "service" {
		return serviceCommand(args[1:], os.Stdout, os.Stderr)
	}
	return run(args, os.Stdout, os.Stderr)
}

// serviceCommand is `kvmmanager-agent.exe service install|uninstall|start|stop`,
// and check-port, which exits 1 when the port is missing (the installer's
// warning). install takes the flags the service should run with (e.g.
// --log-file).
func serviceCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kvmmanager-agent service install [agent flags] | uninstall | start | stop | check-port")
		return exitUsage
	}
	var err error
	switch args[0] {
	case "install":
		err = installService(args[1:], stdout)
	case "uninstall":
		err = uninstallService(stdout)
	case "start":
		err = startService(stdout)
	case "stop":
		err = stopService(stdout)
	case "check-port":
		if err = transport.CheckPort(); err == nil {
			fmt.Fprintf(stdout, "%s is present\n", transport.DefaultDevice)
		}
	default:
		fmt.Fprintf(stderr, "kvmmanager-agent: unknown service command %q (want install, uninstall, start or stop)\n", args[0])
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "kvmmanager-agent: service %s: %v\n", args[0], err)
		return exitFailed
	}
	return exitOK
}

// installService registers the service (automatic, delayed start, as
// LocalSystem; restarted on failure), the Event Log source, and writes the
// default configuration when there is none. Run again, it updates the
// registration to this executable and these flags and keeps the config.
func installService(flags []string, stdout io.Writer) error {
	// The flags are checked now rather than at the next boot.
	if code := run(append(append([]string{}, flags...), "--check-config"), io.Discard, io.Discard); code != exitOK {
		return fmt.Errorf("the flags %q or the configuration they name are not valid (run with --check-config)", flags)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("executable path: %w", err)
	}
	if err := writeDefaultConfig(config.DefaultPath, stdout); err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	cfg := mgr.Config{
		DisplayName:      serviceDisplayName,
		Description:      serviceDescription,
		StartType:        mgr.StartAutomatic,
		DelayedAutoStart: true,
		ErrorControl:     mgr.ErrorNormal,
	}
	args := append([]string{serviceFlag}, flags...)
	s, err := m.OpenService(serviceName)
	if err == nil {
		cfg.BinaryPathName = commandLine(exe, args)
		if err := updateService(s, cfg); err != nil {
			s.Close()
			return fmt.Errorf("update %s: %w", serviceName, err)
		}
		fmt.Fprintf(stdout, "service %s updated: %s\n", serviceName, cfg.BinaryPathName)
	} else {
		s, err = m.CreateService(serviceName, exe, cfg, args...)
		if err != nil {
			return fmt.Errorf("create %s: %w", serviceName, err)
		}
		fmt.Fprintf(stdout, "service %s installed: %s\n", serviceName, commandLine(exe, args))
	}
	defer s.Close()
	// Restart after 5 s, 10 s, then every 30 s; the count resets after a day.
	actions := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 10 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
	}
	if err := s.SetRecoveryActions(actions, 24*60*60); err != nil {
		return fmt.Errorf("set recovery actions of %s: %w", serviceName, err)
	}
	// An agent that exits with an error (not only one that crashes) is
	// restarted too.
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		fmt.Fprintf(stdout, "warning: recovery on non-crash failures not set: %v\n", err)
	}
	err = eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info)
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("register the Event Log source %s: %w", serviceName, err)
	}
	return nil
}

// updateService points an existing registration at cfg's command line,
// start type, names and delayed start. (mgr.Service.UpdateConfig also sets
// the SID type, a level Wine's service manager refuses.)
func updateService(s *mgr.Service, cfg mgr.Config) error {
	bin, _ := windows.UTF16PtrFromString(cfg.BinaryPathName)
	name, _ := windows.UTF16PtrFromString(cfg.DisplayName)
	if err := windows.ChangeServiceConfig(s.Handle, windows.SERVICE_WIN32_OWN_PROCESS, windows.SERVICE_AUTO_START,
		windows.SERVICE_ERROR_NORMAL, bin, nil, nil, nil, nil, nil, name); err != nil {
		return fmt.Errorf("ChangeServiceConfig: %w", err)
	}
	desc, _ := windows.UTF16PtrFromString(cfg.Description)
	d := windows.SERVICE_DESCRIPTION{Description: desc}
	if err := windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_DESCRIPTION, (*byte)(unsafe.Pointer(&d))); err != nil {
		return fmt.Errorf("set the description: %w", err)
	}
	delayed := windows.SERVICE_DELAYED_AUTO_START_INFO{IsDelayedAutoStartUp: 1}
	if err := windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, (*byte)(unsafe.Pointer(&delayed))); err != nil {
		return fmt.Errorf("set delayed start: %w", err)
	}
	return nil
}

// commandLine is how CreateService joins the executable and its arguments.
func commandLine(exe string, args []string) string {
	s := windows.EscapeArg(exe)
	for _, a := range args {
		s += " " + windows.EscapeArg(a)
	}
	return s
}

// writeDefaultConfig writes the built-in defaults to path unless a file is
// there, in a directory only SYSTEM and Administrators may change.
func writeDefaultConfig(path string, stdout io.Writer) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		sd, err := windows.SecurityDescriptorFromString(configDirSDDL)
		if err != nil {
			return fmt.Errorf("config directory security: %w", err)
		}
		d16, err := windows.UTF16PtrFromString(dir)
		if err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
		if err := windows.CreateDirectory(d16, sa); err != nil && !errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if _, err := os.Stat(path); err == nil {
		fmt.Fprintf(stdout, "%s exists: kept\n", path)
		return nil
	}
	b, err := json.MarshalIndent(config.Default(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode the default config: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(append(b, '\r', '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "%s written with the defaults\n", path)
	return nil
}

func uninstallService(stdout io.Writer) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		fmt.Fprintf(stdout, "service %s is not installed\n", serviceName)
	} else {
		defer s.Close()
		if st, err := s.Query(); err == nil && st.State != svc.Stopped {
			if err := waitState(s, svc.Stop, svc.Stopped); err != nil {
				return err
			}
		}
		if err := s.Delete(); err != nil {
			return fmt.Errorf("delete %s: %w", serviceName, err)
		}
		fmt.Fprintf(stdout, "service %s removed\n", serviceName)
	}
	if err := eventlog.Remove(serviceName); err != nil && !errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
		return fmt.Errorf("remove the Event Log source %s: %w", serviceName, err)
	}
	return nil
}

func startService(stdout io.Writer) error {
	return withService(func(s *mgr.Service) error {
		if st, err := s.Query(); err == nil && st.State == svc.Running {
			fmt.Fprintf(stdout, "service %s is running\n", serviceName)
			return nil
		}
		if err := s.Start(); err != nil {
			return fmt.Errorf("start %s: %w", serviceName, err)
		}
		if err := waitState(s, 0, svc.Running); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "service %s started\n", serviceName)
		return nil
	})
}

func stopService(stdout io.Writer) error {
	return withService(func(s *mgr.Service) error {
		if st, err := s.Query(); err == nil && st.State == svc.Stopped {
			fmt.Fprintf(stdout, "service %s is stopped\n", serviceName)
			return nil
		}
		if err := waitState(s, svc.Stop, svc.Stopped); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "service %s stopped\n", serviceName)
		return nil
	})
}

func withService(f func(*mgr.Service) error) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		return fmt.Errorf("open %s (is it installed?): %w", serviceName, err)
	}
	defer s.Close()
	return f(s)
}

// waitState sends control c (unless 0) and waits until the service is in
// state want.
func waitState(s *mgr.Service, c svc.Cmd, want svc.State) error {
	if c != 0 {
		if _, err := s.Control(c); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
			return fmt.Errorf("control %s: %w", serviceName, err)
		}
	}
	deadline := time.Now().Add(serviceWait)
	for {
		st, err := s.Query()
		if err != nil {
			return fmt.Errorf("query %s: %w", serviceName, err)
		}
		if st.State == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still in state %d after %v", serviceName, st.State, serviceWait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runService runs the agent under the service control manager, logging to
// the Event Log unless --log-file is given.
func runService(args []string) int {
	h := &serviceHandler{args: args}
	if err := svc.Run(serviceName, h); err != nil {
		return exitFailed
	}
	return h.code
}

type serviceHandler struct {
	args []string
	code int
}

func (h *serviceHandler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	var out io.Writer = io.Discard
	if elog, err := eventlog.Open(serviceName); err == nil {
		defer elog.Close()
		out = &eventLogWriter{log: elog}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	baseContext = ctx
	done := make(chan int, 1)
	go func() { done <- run(h.args, out, out) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case h.code = <-done:
			// The agent stopped by itself: a bad config (2) or a failure
			// (1) is reported so that the recovery actions apply.
			status <- svc.Status{State: svc.StopPending}
			return false, uint32(h.code)
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				cancel()
				h.code = <-done
				return false, 0
			}
		}
	}
}

// eventLogWriter sends each log line to the Event Log, as an error, a
// warning or information after its level.
type eventLogWriter struct {
	log *eventlog.Log
}

func (w *eventLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\r\n"), "\n") {
		switch {
		case strings.Contains(line, "level=ERROR"):
			w.log.Error(1, line)
		case strings.Contains(line, "level=WARN"):
			w.log.Warning(1, line)
		default:
			w.log.Info(1, line)
		}
	}
	return len(p), nil
}
