// Command kvmmanager-agent is the KVM Manager guest agent: it answers the
// host's JSON-RPC 2.0 requests (protocol 1.0) on the virtio-serial port
// org.kvmmanager.agent.0, or on a unix socket with --listen.
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

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
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
	listen := flags.String("listen", "", "serve clients on a unix socket instead of the port: unix:PATH")
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
	var listenPath string
	if *listen != "" {
		p, ok := strings.CutPrefix(*listen, transport.ListenScheme+":")
		if !ok || p == "" {
			fmt.Fprintf(stderr, "kvmmanager-agent: --listen %q: want %s:PATH\n", *listen, transport.ListenScheme)
			return exitUsage
		}
		listenPath = p
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
	srv := server.New(svc.Handlers(), server.Options{
		Logger:        log,
		MaxConcurrent: cfg.MaxConcurrentRequests,
		MaxLineBytes:  server.LineLimit(cfg.MaxFileSizeBytes),
		// Handlers that never block: answered on the reading goroutine.
		Inline: svc.NonBlocking(),
	})
	log.Info("kvmmanager-agent starting", "version", version.Version, "commit", version.Commit,
		"protocol", protocol.Version, "config", *configPath)

	if listenPath != "" {
		err = transport.Listen(ctx, listenPath, srv, log)
	} else {
		opts := transport.DeviceOptions{Logger: log}
		if flags.Changed("device") {
			opts.Path = *device
		}
		err = transport.ServeDevice(ctx, opts, srv)
	}
	if err != nil {
		log.Error("kvmmanager-agent failed", "err", err)
		return exitFailed
	}
	log.Info("kvmmanager-agent stopped")
	return exitOK
}
