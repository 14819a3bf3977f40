// Package version holds the agent's release identity, set at link time by the
// build (go tool mage build) with -ldflags "-X".
package version

// Version is the release version, e.g. "1.2.0" or "0.0.0-dev+abc1234".
var Version = "0.0.0-dev"

// Commit is the full git commit the binary was built from.
var Commit = "unknown"
