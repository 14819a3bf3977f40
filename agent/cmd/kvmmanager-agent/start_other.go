//go:build !windows

package main

import "os"

// start runs the agent.
func start(args []string) int { return run(args, os.Stdout, os.Stderr) }
