// Command kvmmanager-agentctl drives a kvmmanager guest agent from the host,
// through the unix socket behind the VM's virtio-serial port
// org.kvmmanager.agent.0 (given with --socket, or found from a libvirt
// domain name with --domain).
//
// Exit status: 0 success, 1 the agent answered with an error, 2 usage,
// 3 agent unreachable or no answer in time. exec exits with the remote
// command's exit status instead.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		locator:   systemLocator(),
		virsh:     runVirsh,
		imagesDir: defaultImagesDir,
	})
	stop()
	os.Exit(code)
}
