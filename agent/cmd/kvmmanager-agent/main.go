// Command kvmmanager-agent is the KVM Manager guest agent: it answers the
// host's JSON-RPC 2.0 requests (protocol 1.0) on the virtio-serial port
// org.kvmmanager.agent.0 and, at the same time, the QEMU guest agent
// protocol on org.qemu.guest_agent.0 (config qga_port); or, for development
// and tests, either dialect on a unix socket (--listen, --qga-listen).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
	"github.com/kvmmanager/guest-agent/agent/server"
	"github.com/kvmmanager/guest-agent/agent/transport"
	"github.com/kvmmanager/guest-agent/agent/version"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the agent could not run (e.g. --listen on a regular file)
	exitUsage  = 2 // bad flags or configuration
)

func main() {
	// start is per OS: run itself, or on Windows also the service
	// subcommands and the service control manager's entry (service_windows.go).
	os.Exit(start(os.Args[1:]))
}

// baseContext is the parent of run's context: the Windows service cancels
// it when the service control manager says stop.
var baseContext = context.Background()

func run(args []string, stdout, stderr io.Writer) int {
	flags := pflag.NewFlagSet("kvmmanager-agent", pflag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", config.DefaultPath, "configuration file (missing: built-in defaults)")
	device := flags.String("device", transport.DefaultDevice, "virtio-serial port, or a unix socket to connect to")
	listen := flags.String("listen", "", "serve clients on a unix socket instead of the ports: unix:PATH")
	qgaDevice := flags.String("qga-device", "", "QGA virtio-serial port, or a unix socket to connect to (default: found by name)")
	qgaListen := flags.String("qga-listen", "", "serve the QEMU guest agent protocol on a unix socket instead of the ports: unix:PATH")
	logLevel := flags.String("log-level", "", "debug, info, warn or error (overrides the config)")
	logFile := flags.String("log-file", "", "append logs to this file instead of stderr")
	checkConfig := flags.Bool("check-config", false, "validate the configuration and exit 0 (valid) or 2")
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kvmmanager-agent [flags]\n\n%s", flags.FlagUsages())
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "kvmmanager-agent: %v\n", err)
		return exitUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "kvmmanager-agent: unexpected argument %q\n", flags.Arg(0))
		return exitUsage
	}
	// Checked before --check-config answers, so that it checks the flags
	// (OpenRC keeps them in conf.d) as well as the file.
	if *logLevel != "" && !validLevel(*logLevel) {
		fmt.Fprintf(stderr, "kvmmanager-agent: --log-level: log level %q: want debug, info, warn or error\n", *logLevel)
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "kvmmanager-agent %s (commit %s, protocol %s)\n", version.Version, version.Commit, protocol.Version)
		return exitOK
	}

	cfg, err := config.Load(*configPath)
	missing := errors.Is(err, config.ErrNotExist)
	if err != nil && !missing {
		fmt.Fprintf(stderr, "kvmmanager-agent: %v\n", err)
		return exitUsage
	}
	if *checkConfig {
		if missing {
			fmt.Fprintf(stdout, "%s does not exist: the built-in defaults apply\n", *configPath)
		} else {
			fmt.Fprintf(stdout, "%s: OK\n", *configPath)
		}
		return exitOK
	}
	level := cfg.LogLevel
	if *logLevel != "" {
		level = *logLevel
	}
	var listenPath, qgaListenPath string
	for _, l := range []struct {
		flag, value string
		path        *string
	}{{"--listen", *listen, &listenPath}, {"--qga-listen", *qgaListen, &qgaListenPath}} {
		if l.value == "" {
			continue
		}
		p, ok := strings.CutPrefix(l.value, transport.ListenScheme+":")
		if !ok || p == "" {
			fmt.Fprintf(stderr, "kvmmanager-agent: %s %q: want %s:PATH\n", l.flag, l.value, transport.ListenScheme)
			return exitUsage
		}
		*l.path = p
	}
	log, closeLog, err := newLogger(level, *logFile, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "kvmmanager-agent: %v\n", err)
		return exitUsage
	}
	defer closeLog()
	if missing {
		log.Warn("config file not found, using the built-in defaults", "path", *configPath)
	}
	tuneMemory(cfg)

	ctx, stop := signal.NotifyContext(baseContext, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal, a second one kills at once.
	context.AfterFunc(ctx, stop)

	svc := methods.New(cfg, methods.Options{Logger: log})
	// One memory budget for both ports.
	budget := server.NewBudget(cfg.MaxMemoryBytes, 0)
	srv := server.New(svc.Handlers(), server.Options{
		Logger:        log,
		Budget:        budget,
		MaxConcurrent: cfg.MaxConcurrentRequests,
		MaxLineBytes:  protocol.LineLimit(cfg.MaxFileSizeBytes),
		// Handlers that never block: answered on the reading goroutine.
		Inline: svc.NonBlocking(),
		// file_write's content goes to disk as the line comes in.
		Spooled: svc.SpooledMethods(),
	})
	dialect := newQGADialect(svc, cfg, log, budget) // nil where the QGA back end does not exist (Windows)
	log.Info("kvmmanager-agent starting", "version", version.Version, "commit", version.Commit,
		"protocol", protocol.Version, "config", *configPath, "qga_port", cfg.QGAPort)

	var serve []func(context.Context) error
	if listenPath != "" || qgaListenPath != "" {
		// Development and tests: the sockets given, no port.
		if listenPath != "" {
			serve = append(serve, func(ctx context.Context) error { return transport.Listen(ctx, listenPath, srv, log) })
		}
		if qgaListenPath != "" && dialect != nil {
			serve = append(serve, func(ctx context.Context) error { return transport.Listen(ctx, qgaListenPath, dialect, log) })
		}
	} else {
		opts := transport.DeviceOptions{Logger: log}
		if flags.Changed("device") {
			opts.Path = *device
		}
		serve = append(serve, func(ctx context.Context) error { return transport.ServeDevice(ctx, opts, srv) })
		if dialect == nil {
			log.Info("the QEMU guest agent protocol is not served on this system (qemu-ga from virtio-win serves it): not serving " + qapi.PortName)
		} else if cfg.QGAPort == config.QGAPortAuto || *qgaDevice != "" {
			qopts := transport.DeviceOptions{
				Logger:   log.With("port", qapi.PortName),
				PortName: qapi.PortName,
				Optional: true,
				Path:     *qgaDevice,
			}
			if *qgaDevice == "" {
				// qemu-ga has the port, or will have it: leave it.
				qopts.Yield = qemuGARunning
			}
			serve = append(serve, func(ctx context.Context) error { return transport.ServeDevice(ctx, qopts, dialect) })
		} else {
			log.Info("qga_port is off: not serving " + qapi.PortName)
		}
	}
	err = serveAll(ctx, serve)
	// Background commands (exec_start, guest-exec) end with the agent.
	svc.KillJobs(10 * time.Second)
	if err != nil {
		log.Error("kvmmanager-agent failed", "err", err)
		return exitFailed
	}
	log.Info("kvmmanager-agent stopped")
	return exitOK
}

// serveAll runs the servers until ctx ends; the first to fail stops the
// others, and its error is the result.
func serveAll(ctx context.Context, serve []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(serve))
	for _, fn := range serve {
		go func() {
			err := fn(ctx)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range serve {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
